// Starts Swagger UI on /api/v1/docs.  A file rather than an inline script, so the console's
// Content-Security-Policy (script-src 'self') needs no exception.
"use strict";
(function () {
  var el = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: el.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The public validator badge would load an image from a third-party site.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
})();
