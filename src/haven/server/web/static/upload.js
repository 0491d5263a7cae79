// Drag and drop for the upload form: files dropped on the zone are put into its plain file input.
// Without JavaScript the input works as it is.
document.querySelectorAll(".drop-zone").forEach((zone) => {
  const input = document.getElementById(zone.dataset.dropFor);
  if (!input || typeof DataTransfer === "undefined") return;
  const mark = (on) => zone.classList.toggle("dragging", on);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); mark(true); });
  zone.addEventListener("dragleave", () => mark(false));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    mark(false);
    const all = new DataTransfer();
    for (const f of input.files) all.items.add(f);
    for (const f of e.dataTransfer.files) all.items.add(f);
    input.files = all.files;
  });
});
