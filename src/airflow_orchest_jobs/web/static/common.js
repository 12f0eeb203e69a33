// Shared helpers of the Orchest job views. Data is only ever put in the page as text.
"use strict";
const OJ = (() => {
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function fmtDate(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }
  function fmtBytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }
  function value(v) {
    if (v === undefined) return "";
    return typeof v === "string" ? v : JSON.stringify(v);
  }
  async function api(url, options) {
    const opts = Object.assign({credentials: "same-origin", headers: {}}, options || {});
    if (opts.body !== undefined) {
      opts.method = opts.method || "POST";
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.body);
    }
    const response = await fetch(url, opts);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const detail = data && data.detail ? (typeof data.detail === "string" ? data.detail
        : JSON.stringify(data.detail)) : response.statusText;
      const error = new Error(`${response.status}: ${detail}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }
  // Airflow's UI shows these pages in a sandboxed iframe (no top navigation): links to
  // Airflow's own pages are followed by an anchor of the (same-origin) top document.
  function navigateTop(url) {
    try {
      if (window.top !== window && window.top.document) {
        const a = window.top.document.createElement("a");
        a.href = url;
        window.top.document.body.appendChild(a);
        a.click();
        a.remove();
        return;
      }
    } catch (e) { /* not same-origin: open here */ }
    window.location.href = url;
  }
  function topLink(url, text, props) {
    return el("a", Object.assign({href: url, onclick: (ev) => {
      if (ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
      ev.preventDefault(); navigateTop(url);
    }}, props || {}), text);
  }
  function badge(state, label) {
    return el("span", {class: `badge state-${state || "none"}`, "data-state": state || "none"},
      label || state || "no status");
  }
  // replaceChildren without the null/false placeholders of optional parts.
  function set(node, ...children) {
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
    return node;
  }
  return {el, set, fmtDate, fmtDuration, fmtBytes, value, api, navigateTop, topLink, badge};
})();
