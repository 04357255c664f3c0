/**
 * ui/toast.js: the page's short notices (`<div id="toast">`), one at a time, for 3.5 s.
 */

let toastTimer = null;

/** Show `text` (`kind`: 'info' or 'error'). */
export function toast(text, kind = 'info') {
  const node = document.querySelector('#toast');
  node.textContent = text;
  node.dataset.kind = kind;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, 3500);
}
