// Black out parts of an ID image in the browser before it is sent.
// Without JavaScript the form sends the file unchanged.
(function () {
  "use strict";
  var input = document.getElementById("document");
  var box = document.getElementById("redact");
  var canvas = document.getElementById("redact-canvas");
  var undo = document.getElementById("redact-undo");
  var form = document.getElementById("recovery-form");
  if (!input || !canvas || !form || !window.DataTransfer) { return; }
  var ctx = canvas.getContext("2d");
  var img = null, boxes = [], start = null, type = "image/jpeg", name = "document.jpg";

  function draw() {
    if (!img) { return; }
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#000";
    boxes.forEach(function (b) { ctx.fillRect(b.x, b.y, b.w, b.h); });
  }
  function point(ev) {
    var r = canvas.getBoundingClientRect();
    var t = ev.touches ? ev.touches[0] : ev;
    return { x: (t.clientX - r.left) * canvas.width / r.width, y: (t.clientY - r.top) * canvas.height / r.height };
  }
  function down(ev) { start = point(ev); ev.preventDefault(); }
  function up(ev) {
    if (!start) { return; }
    var p = ev.changedTouches ? point({ clientX: ev.changedTouches[0].clientX, clientY: ev.changedTouches[0].clientY }) : point(ev);
    var b = { x: Math.min(start.x, p.x), y: Math.min(start.y, p.y), w: Math.abs(p.x - start.x), h: Math.abs(p.y - start.y) };
    start = null;
    if (b.w > 2 && b.h > 2) { boxes.push(b); draw(); replaceFile(); }
  }
  function replaceFile() {
    canvas.toBlob(function (blob) {
      if (!blob) { return; }
      var dt = new DataTransfer();
      dt.items.add(new File([blob], name, { type: type }));
      input.files = dt.files;
      input.dataset.redacted = String(boxes.length);
    }, type, 0.92);
  }
  input.addEventListener("change", function () {
    var f = input.files && input.files[0];
    if (input.dataset.redacted) { return; }
    boxes = []; img = null; box.hidden = true;
    if (!f || !/^image\/(jpeg|png|pjpeg)$/.test(f.type)) { return; }
    type = f.type === "image/png" ? "image/png" : "image/jpeg";
    name = type === "image/png" ? "document.png" : "document.jpg";
    var url = URL.createObjectURL(f);
    var i = new Image();
    i.onload = function () {
      var scale = Math.min(1, 2000 / Math.max(i.width, i.height));
      canvas.width = Math.round(i.width * scale);
      canvas.height = Math.round(i.height * scale);
      img = i; draw(); box.hidden = false;
      URL.revokeObjectURL(url);
    };
    i.src = url;
  });
  input.addEventListener("click", function () { delete input.dataset.redacted; });
  canvas.addEventListener("mousedown", down);
  canvas.addEventListener("mouseup", up);
  canvas.addEventListener("touchstart", down, { passive: false });
  canvas.addEventListener("touchend", up);
  undo.addEventListener("click", function () { boxes.pop(); draw(); replaceFile(); });
})();
