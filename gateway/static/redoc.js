// ReDoc (its script served by the gateway itself, so the page works with no network) on the document
// openapi.js fetches: ReDoc only reads the document, it sends no requests of its own.
"use strict";

const shown = document.getElementById("redoc");
openapi().then(
  (spec) => Redoc.init(spec, {}, shown),
  (err) => { shown.textContent = `Cannot show the API docs: ${err.message}`; },
);
