"""Fine-tuning: `Trainer`, `TrainingArguments`, collators, callbacks and the model-card writer.

    from haven import Trainer, TrainingArguments, DataCollatorWithPadding
    trainer = Trainer(model, TrainingArguments("out", eval_strategy="epoch"), train_dataset=train,
                      eval_dataset=dev, processing_class=tokenizer, compute_metrics=accuracy)
    trainer.train(); trainer.push_to_hub()

Layout: arguments (TrainingArguments) -> data, collators, optim, checkpoint, callbacks -> trainer ->
card, publish (imported on first push).
"""

from .arguments import TrainingArguments
from .callbacks import (
    CallbackHandler,
    DefaultFlowCallback,
    EarlyStoppingCallback,
    ProgressCallback,
    TensorBoardCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from .collators import DataCollatorWithPadding, default_data_collator
from .trainer import EvalPrediction, PredictionOutput, Trainer, TrainOutput

__all__ = [
    "CallbackHandler",
    "DataCollatorWithPadding",
    "DefaultFlowCallback",
    "EarlyStoppingCallback",
    "EvalPrediction",
    "PredictionOutput",
    "ProgressCallback",
    "TensorBoardCallback",
    "TrainOutput",
    "Trainer",
    "TrainerCallback",
    "TrainerControl",
    "TrainerState",
    "TrainingArguments",
    "default_data_collator",
]
