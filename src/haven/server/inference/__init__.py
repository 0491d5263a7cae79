"""The hosted inference API: `/models/{id}` (the Hub's shape, for widgets and `InferenceClient`) and
`/v1/...` (OpenAI-compatible), served from the hub's own repositories.

- `registry`: models loaded once per (repo, commit), an LRU bounded by weight bytes, 503 while loading;
- `batching`: the token-budget dynamic batcher for encoder tasks; `continuous`: continuous batching
  for text generation over one shared, right-aligned KV buffer;
- `tasks` / `generation`: inputs and parameters per task, answered by the pipelines themselves;
- `routes` (`/models`), `openai` (`/v1`), `service` (access checks, limits, the way to a model).
"""
