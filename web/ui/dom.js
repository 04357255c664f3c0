/**
 * ui/dom.js: the page's one DOM element builder (no framework, no build step).
 */

/**
 * A DOM element: `h('td', { class: 'num', text: '3' }, child, ...)`. Attributes named `data-*`,
 * `aria-*` and a few others are set as attributes, the rest as properties; children may be
 * nodes, strings or arrays of them (null and false are left out).
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (/^(data-|aria-)|^(title|type|for|role|href|download|name|value|accept)$/.test(key)) {
      node.setAttribute(key, value === true ? '' : value);
    } else node[key] = value;
  }
  for (const child of children.flat()) if (child != null && child !== false) node.append(child);
  return node;
}
