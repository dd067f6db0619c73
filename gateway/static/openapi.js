// The OpenAPI document for the API docs pages (Swagger UI at /docs, ReDoc at /redoc). The pages hold no
// data, so they need no token to load; the document does. It is fetched with the token the web page saved,
// asking for one on a 401.
"use strict";

const TOKEN_KEY = "simtrain-token"; // the web page's key (app.js), so one token serves every page

function bearer() {
  const token = localStorage.getItem(TOKEN_KEY);
  return token ? `Bearer ${token}` : null;
}

async function openapi() {
  for (;;) {
    const auth = bearer();
    const res = await fetch("/openapi.json", { headers: auth ? { Authorization: auth } : {} });
    if (res.status !== 401) return res.json();
    const token = window.prompt("This gateway needs an API token:");
    if (!token) throw new Error("no API token given");
    localStorage.setItem(TOKEN_KEY, token);
  }
}
