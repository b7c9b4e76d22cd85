// Swagger UI over this service's own document. A file, not an inline script, so the page's
// Content-Security-Policy can allow only 'self'.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
  });
});
