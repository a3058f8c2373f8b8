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
// File inputs: the label is the Vietnamese button; this writes what was chosen next to it, in Vietnamese,
// instead of the browser's "No file chosen". Files dropped on the button are taken as if chosen.
function showChosen(input) {
  var out = document.getElementById(input.id + "-chosen");
  if (!out) { return; }
  var names = [];
  for (var i = 0; input.files && i < input.files.length; i++) { names.push(input.files[i].name); }
  if (names.length === 0) { out.textContent = "Chưa chọn tệp"; }
  else if (names.length === 1) { out.textContent = "Đã chọn: " + names[0]; }
  else { out.textContent = "Đã chọn " + names.length + " tệp: " + names.slice(0, 3).join(", ") + (names.length > 3 ? ", …" : ""); }
}
function filePick(event) {
  var pick = event.target.closest ? event.target.closest(".filepick") : null;
  return pick ? pick.querySelector("input[type=file]") : null;
}
document.addEventListener("change", function (event) {
  var input = event.target;
  if (input.matches && input.matches("input[type=file]")) { showChosen(input); }
});
document.addEventListener("dragover", function (event) {
  var input = filePick(event);
  if (!input) { return; }
  event.preventDefault();
  input.closest(".filepick").classList.add("dragging");
});
document.addEventListener("dragleave", function (event) {
  var input = filePick(event);
  if (input) { input.closest(".filepick").classList.remove("dragging"); }
});
document.addEventListener("drop", function (event) {
  var input = filePick(event);
  if (!input || !event.dataTransfer || !event.dataTransfer.files.length) { return; }
  event.preventDefault();
  input.closest(".filepick").classList.remove("dragging");
  var files = event.dataTransfer.files;
  if (!input.multiple && files.length > 1) {
    var one = new DataTransfer();
    one.items.add(files[0]);
    files = one.files;
  }
  input.files = files;
  showChosen(input);
});
window.addEventListener("pageshow", function () {  // back/forward keeps the chosen files: show them
  var inputs = document.querySelectorAll(".filepick input[type=file]");
  for (var i = 0; i < inputs.length; i++) { showChosen(inputs[i]); }
});
