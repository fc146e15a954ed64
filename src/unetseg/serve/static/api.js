// The page's ground: the element lookup, the API client (the same API a program uses, see /docs), messages.

export const $ = (id) => document.getElementById(id);

export function token() { return localStorage.getItem("unetseg-token") || ""; }

export async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers.Authorization = "Bearer " + token();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).detail || message; } catch (e) { /* not JSON */ }
    if (typeof message !== "string") message = JSON.stringify(message);
    throw new Error(message);
  }
  return response;
}

export async function json(path, method, body) {
  const options = { method, headers: { "Content-Type": "application/json" } };
  if (body !== undefined) options.body = JSON.stringify(body);
  return (await api(path, options)).json();
}

export function showError(message) {
  $("error").textContent = message ? "error: " + message : "";
  $("error").hidden = !message;
}

export function status(text) { $("status").textContent = text; }

export function plural(n, word, many) { return n + " " + (n === 1 ? word : many || word + "s"); }

export function download(name, blob) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
