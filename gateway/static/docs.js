// The API docs: Swagger UI. The page holds no data, so it needs no token to load; the OpenAPI document
// does. The page fetches it with the token the web page saved (asking for one on a 401) and sends that
// token with each "Try it out" request, unless the Authorize button set another.
"use strict";

const TOKEN_KEY = "simtrain-token"; // the web page's key (app.js), so one token serves both

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

openapi().then(
  (spec) => SwaggerUIBundle({
    spec,
    dom_id: "#swagger-ui",
    persistAuthorization: true,
    requestInterceptor: (request) => {
      const auth = bearer();
      if (auth && !request.headers.Authorization) request.headers.Authorization = auth;
      return request;
    },
  }),
  (err) => { document.getElementById("swagger-ui").textContent = `Cannot show the API docs: ${err.message}`; },
);
