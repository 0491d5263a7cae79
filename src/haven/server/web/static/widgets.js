// Haven's inference widget: reads the task, endpoint and examples from the widget's data
// attributes, sends POST /models/{ns}/{name} (same origin, the page's session cookie) and shows
// the answer. Every text from the model or the user goes in with textContent, never as HTML.
(function () {
  "use strict";
  var root = document.querySelector("section.widget");
  if (!root) return;
  var form = root.querySelector("form.widget-form");
  var status = root.querySelector(".widget-status");
  var output = root.querySelector(".widget-output");
  var task = root.dataset.task;
  var endpoint = root.dataset.endpoint;
  var examples = JSON.parse(root.dataset.examples || "[]");
  var busy = false;
  form.hidden = false;

  function field(id) { return document.getElementById(id); }
  function node(tag, cls, text) {
    var el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text !== undefined) el.textContent = text;
    return el;
  }
  function say(text, kind) {
    status.textContent = text;
    status.className = "widget-status" + (kind ? " " + kind : "");
    status.setAttribute("role", kind === "error" ? "alert" : "status");
  }
  function lines(text) { return text.split("\n").map(function (s) { return s.trim(); }).filter(Boolean); }

  var picker = field("w-example");
  if (picker) picker.addEventListener("change", function () {
    var ex = examples[Number(picker.value)] || {};
    if (field("w-text") && ex.text !== undefined) field("w-text").value = ex.text;
    if (field("w-labels") && ex.candidate_labels !== undefined) field("w-labels").value = ex.candidate_labels;
    if (field("w-source") && ex.source_sentence !== undefined) field("w-source").value = ex.source_sentence;
    if (field("w-sentences") && ex.sentences) field("w-sentences").value = ex.sentences.join("\n");
  });
  var sample = field("w-sample");
  if (sample) sample.addEventListener("change", function () { field("w-temp").disabled = !sample.checked; });

  function request() {
    if (task === "sentence-similarity") {
      return { inputs: { source_sentence: field("w-source").value, sentences: lines(field("w-sentences").value) } };
    }
    var body = { inputs: field("w-text").value };
    if (task === "zero-shot-classification") {
      body.parameters = {
        candidate_labels: field("w-labels").value.split(",").map(function (s) { return s.trim(); }).filter(Boolean),
        multi_label: field("w-multi").checked
      };
    } else if (task === "text-generation") {
      // the prompt is shown as typed; the answer's generated_text is the continuation alone
      body.parameters = { max_new_tokens: Number(field("w-max").value), do_sample: sample.checked, return_full_text: false };
      if (sample.checked) body.parameters.temperature = Number(field("w-temp").value);
      body.stream = true;
    }
    return body;
  }

  // score bars: a <meter> per row (no inline style, so the page's CSP holds)
  function bars(rows) {
    var list = node("ol", "widget-bars");
    rows.forEach(function (r) {
      var item = node("li");
      item.dataset.score = String(r.score);  // the exact score; the bar itself is clamped to [0, 1]
      var label = node("span", "bar-label", r.label);
      var meter = node("meter");
      meter.min = 0; meter.max = 1; meter.value = r.score;
      item.appendChild(label);
      item.appendChild(meter);
      item.appendChild(node("span", "bar-score", r.score.toFixed(3)));
      list.appendChild(item);
    });
    return list;
  }

  function flat(value) { return Array.isArray(value) && Array.isArray(value[0]) && !(typeof value[0][0] === "number") ? value[0] : value; }

  function shape(value) {
    var dims = [];
    while (Array.isArray(value)) { dims.push(value.length); value = value[0]; }
    return dims;
  }
  function firstValues(value, n) {
    while (Array.isArray(value) && Array.isArray(value[0])) value = value[0];
    return value.slice(0, n);
  }

  function entities(text, found) {
    var box = node("p", "widget-entities");
    var at = 0;
    found.slice().sort(function (a, b) { return a.start - b.start; }).forEach(function (e) {
      if (typeof e.start !== "number" || e.start < at) return;
      box.appendChild(document.createTextNode(text.slice(at, e.start)));
      var mark = node("mark", "entity", text.slice(e.start, e.end));
      mark.appendChild(node("span", "entity-label", e.entity_group || e.entity));
      mark.title = (e.entity_group || e.entity) + " " + Number(e.score).toFixed(3);
      box.appendChild(mark);
      at = e.end;
    });
    box.appendChild(document.createTextNode(text.slice(at)));
    return box;
  }

  function show(answer, body) {
    output.textContent = "";
    if (task === "fill-mask") {
      output.appendChild(bars(flat(answer).map(function (r) { return { label: r.token_str, score: r.score }; })));
    } else if (task === "text-classification") {
      output.appendChild(bars(flat(answer)));
    } else if (task === "zero-shot-classification") {
      output.appendChild(bars(answer));
    } else if (task === "token-classification") {
      output.appendChild(entities(body.inputs, flat(answer)));
    } else if (task === "sentence-similarity") {
      output.appendChild(bars(answer.map(function (s, i) { return { label: body.inputs.sentences[i], score: s }; })));
    } else if (task === "feature-extraction") {
      output.appendChild(node("p", "widget-shape", "Shape: [" + shape(answer).join(", ") + "]"));
      output.appendChild(node("pre", "widget-vector", firstValues(answer, 8).map(function (v) { return v.toFixed(4); }).join(", ") + " …"));
    } else if (task === "text-generation") {
      var text = Array.isArray(answer) ? answer[0].generated_text : answer.generated_text;
      output.appendChild(node("p", "widget-generated", text));
    }
  }

  // the SSE stream of a text-generation answer: one `data: {...}` event per token
  function stream(response, body, started) {
    output.textContent = "";
    var text = node("p", "widget-generated");
    text.appendChild(node("span", "prompt", body.inputs));
    var generated = node("strong", "generated", "");
    text.appendChild(generated);
    output.appendChild(text);
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var pending = "", tokens = 0;
    function handle(block) {
      block.split("\n").forEach(function (line) {
        if (line.indexOf("data:") !== 0) return;
        var event = JSON.parse(line.slice(5));
        if (event.error) throw new Error(event.error);
        if (event.token && !event.token.special) { generated.textContent += event.token.text; tokens += 1; }
        if (event.generated_text !== null && event.generated_text !== undefined) generated.textContent = event.generated_text;
      });
    }
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) {
          if (pending.trim()) handle(pending);
          say(tokens + " tokens in " + Math.round(performance.now() - started) + " ms");
          return;
        }
        pending += decoder.decode(chunk.value, { stream: true });
        var parts = pending.split("\n\n");
        pending = parts.pop();
        parts.forEach(handle);
        say("Generating… " + tokens + " tokens");
        return pump();
      });
    }
    return pump();
  }

  function send(body, started) {
    return fetch(endpoint, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": body.stream ? "text/event-stream" : "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      if (response.status === 503 && !(body.options && body.options.wait_for_model)) {
        return response.json().then(function (err) {
          var eta = err.estimated_time ? ", ~" + Math.ceil(err.estimated_time) + " s" : "";
          say("The model is loading" + eta + "; the answer follows when it is ready.", "loading");
          body.options = { wait_for_model: true };
          return send(body, started);
        });
      }
      if (!response.ok) {
        return response.json().catch(function () { return {}; }).then(function (err) {
          throw new Error((err && err.error) || "the server answered " + response.status);
        });
      }
      if (body.stream && (response.headers.get("content-type") || "").indexOf("text/event-stream") === 0) {
        return stream(response, body, started);
      }
      return response.json().then(function (answer) {
        show(answer, body);
        say("Computed in " + Math.round(performance.now() - started) + " ms");
      });
    });
  }

  function compute() {
    if (busy) return;
    busy = true;
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    var body = request();
    say("Computing…");
    send(body, performance.now()).catch(function (err) {
      say("Error: " + err.message, "error");
    }).then(function () {
      busy = false;
      button.disabled = false;
    });
  }

  form.addEventListener("submit", function (event) { event.preventDefault(); compute(); });
  form.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); compute(); }
  });
})();
