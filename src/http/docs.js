// Renders /openapi.json as a browsable list of operations, grouped by tag.
(async function () {
  const root = document.getElementById("root");
  const spec = await (await fetch("/openapi.json")).json();
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    children.forEach((c) => node.append(c));
    return node;
  };
  const resolve = (schema) => {
    const ref = schema && schema.$ref;
    return ref ? spec.components.schemas[ref.split("/").pop()] : schema;
  };
  const groups = {};
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      (op.tags || ["other"]).forEach((tag) => (groups[tag] = groups[tag] || []).push({ path, method, op }));
    }
  }
  root.textContent = "";
  root.append(el("p", {}, spec.info.description || ""));
  for (const [tag, ops] of Object.entries(groups)) {
    root.append(el("h2", {}, tag));
    for (const { path, method, op } of ops) {
      const body = el("div", { class: "body" });
      if (op.description) body.append(el("p", {}, op.description));
      if (op.parameters) {
        body.append(el("p", {}, "Parameters: " + op.parameters.map((p) => `${p.name} (${p.in}${p.required ? ", required" : ""})`).join(", ")));
      }
      const req = op.requestBody && op.requestBody.content["application/json"];
      if (req) body.append(el("p", {}, "Request body:"), el("pre", {}, JSON.stringify(resolve(req.schema), null, 2)));
      const responses = Object.entries(op.responses || {}).map(([code, r]) => `${code} ${r.description || ""}`);
      body.append(el("p", {}, "Responses: " + responses.join(" · ")));
      root.append(
        el("details", {}, el("summary", {}, el("span", { class: `method ${method}` }, method), el("code", {}, path), " — ", op.summary || ""), body)
      );
    }
  }
})();
