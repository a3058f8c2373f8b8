// Small helpers, no inline scripts (the page's CSP allows only files from this box).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) { event.preventDefault(); return; }
  // one click = one submit: a second click while the page loads does nothing
  if (form.dataset.sent === "1") { event.preventDefault(); return; }
  form.dataset.sent = "1";
  var buttons = form.querySelectorAll("button[type=submit]");
  for (var i = 0; i < buttons.length; i++) { buttons[i].setAttribute("aria-busy", "true"); }
}, true);
window.addEventListener("pageshow", function () {
  var forms = document.querySelectorAll("form[data-sent]");
  for (var i = 0; i < forms.length; i++) { forms[i].removeAttribute("data-sent"); }
});
