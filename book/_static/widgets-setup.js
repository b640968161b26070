// Loaded just before the vendored ipywidgets embed bundle on pages that contain widgets
// (see nb_ipywidgets_js in _config.yml). Two small fixes so that saved widget state
// renders fully offline and without console errors:
(function () {
  "use strict";

  // 1. Tell @jupyter-widgets/html-manager where its own asset files (the Font Awesome
  //    web fonts used by icon widgets) live, instead of guessing a path from the AMD
  //    module name. Sphinx >= 7.2 writes the relative path to the site root into
  //    <html data-content_root="...">; the assets sit in _static/vendor/html-manager/.
  var root = document.documentElement.getAttribute("data-content_root") || "";
  var assets = new URL(root + "_static/vendor/html-manager/", document.baseURI).href;
  window.__jupyter_widgets_assets_path__ = assets;
  //    That variable is read only after the bundle's style sheets have been built: each AMD module of
  //    the bundle takes its asset folder from its own require.js URL (module.uri), which by default is
  //    <page folder>/<module id>.js, so the Font Awesome fonts were requested from
  //    chapters/@jupyter-widgets/html-manager/dist/ (three 404s per widget page, .woff2 then .woff then
  //    .ttf). require.js reads a global `require` object as its configuration when it loads (this file
  //    runs just before it): map every module id of the bundle into the vendored folder.
  if (typeof window.require === "undefined") {
    var ids = [
      "@jupyter-widgets/base",
      "@jupyter-widgets/base7",
      "@jupyter-widgets/controls",
      "@jupyter-widgets/controls7",
      "@jupyter-widgets/html-manager",
      "@jupyter-widgets/html-manager/dist/libembed-amd",
    ];
    var paths = {};
    ids.forEach(function (id) {
      paths[id] = assets + id.split("/").pop();
    });
    window.require = { paths: paths };
  }

  // 2. The widget bundle typesets labels with the MathJax 2 API
  //    (MathJax.Hub.Queue(["Typeset", MathJax.Hub, element])) whenever window.MathJax
  //    exists. The book loads MathJax 3, which has no Hub, so every widget with a
  //    description threw "Cannot read properties of undefined (reading 'Queue')".
  //    Provide a minimal Hub that forwards to MathJax 3's typesetPromise.
  function installHubShim() {
    var MJ = window.MathJax;
    if (!MJ || MJ.Hub) {
      return;
    }
    MJ.Hub = {
      Queue: function (job) {
        var el = job && job[2];
        var run = function () {
          if (window.MathJax && window.MathJax.typesetPromise) {
            return window.MathJax.typesetPromise(el ? [el] : undefined);
          }
        };
        var ready = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
        Promise.resolve(ready).then(run).catch(function () {});
      },
    };
  }
  // MathJax 3 is loaded with `defer`, so it has replaced window.MathJax (until then a
  // plain config object, which must not be touched) by DOMContentLoaded; widgets render
  // on `load`, after both.
  document.addEventListener("DOMContentLoaded", installHubShim);
  window.addEventListener("load", installHubShim);
})();
