// The built-in pages behind mailed links: read ?token=, complete the flow through the API,
// and show the result or the API's problem.
"use strict";
(function () {
  const token = new URLSearchParams(window.location.search).get("token");
  // The token is a live credential: take it out of the address bar and the history at once.
  window.history.replaceState(null, "", window.location.pathname);
  const page = document.body.dataset.page;
  const status = document.getElementById("status");
  const show = (kind, text) => {
    status.className = kind;
    status.textContent = text;
  };

  // An RFC 9457 problem as one readable message (textContent only: never parsed as HTML).
  const describe = async (response) => {
    let problem;
    try {
      problem = await response.json();
    } catch (_) {
      return `The server answered ${response.status}.`;
    }
    const errors = (problem.errors || []).map((e) => `${e.field}: ${e.message}`);
    const lines = errors.length ? errors : [problem.detail || problem.title || `The server answered ${response.status}.`];
    lines.push(`(${problem.code || response.status}, request ${problem.request_id || "unknown"})`);
    return lines.join("\n");
  };

  // Resolves to null on success, else to the message to show.
  const post = async (path, body) => {
    try {
      const response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
      });
      return response.ok ? null : await describe(response);
    } catch (_) {
      return "The server could not be reached. Try again in a moment.";
    }
  };

  if (!token) {
    show("error", "This link has no token. Open the link from the mail again, or ask for a new mail.");
    return;
  }

  if (page === "verify-email") {
    post("/v1/auth/verify-email", { token }).then((problem) =>
      problem ? show("error", problem) : show("ok", "Your email address is confirmed. You can close this page."),
    );
    return;
  }

  const form = document.getElementById("reset");
  const password = document.getElementById("new-password");
  const repeat = document.getElementById("repeat-password");
  form.hidden = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (password.value !== repeat.value) {
      show("error", "The two passwords differ.");
      return;
    }
    show("", "Saving…");
    const problem = await post("/v1/auth/password/reset", { token, new_password: password.value });
    if (problem) {
      show("error", problem);
      return;
    }
    form.hidden = true;
    show("ok", "Your password is changed and every session is signed out. Sign in with the new password.");
  });
})();
