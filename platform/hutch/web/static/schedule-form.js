// The schedule form: show only the chosen kind's fields. Without JavaScript every
// kind's fields show, and the server uses the chosen kind's (hutch.web.pages.schedules).
document.addEventListener("DOMContentLoaded", () => {
  const kind = document.getElementById("f-kind");
  if (!kind) return;
  const show = () => {
    for (const set of document.querySelectorAll("fieldset.kind")) {
      set.hidden = set.dataset.kind !== kind.value;
    }
  };
  kind.addEventListener("change", show);
  show();
});
