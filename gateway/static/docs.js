// Swagger UI (its assets served by the gateway itself, so the page works with no network) on the document
// openapi.js fetches. Each "Try it out" request carries the saved token, unless the Authorize button set
// another.
"use strict";

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
