// A small history router for the console's pages under /admin/.
import { useEffect, useState } from 'preact/hooks';

export const BASE = '/admin';

function here(): { path: string; query: URLSearchParams } {
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) || '/' : '/';
  return { path: path.replace(/\/+$/, '') || '/', query: new URLSearchParams(location.search) };
}

const listeners = new Set<() => void>();
addEventListener('popstate', () => listeners.forEach((l) => l()));

export function navigate(to: string, replace = false) {
  const url = BASE + to;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  listeners.forEach((l) => l());
}

export function useRoute() {
  const [route, setRoute] = useState(here);
  useEffect(() => {
    const update = () => setRoute(here());
    listeners.add(update);
    return () => void listeners.delete(update);
  }, []);
  return route;
}

/** A link to a console page: a real `<a href>` (so it opens in a new tab too), routed in place. */
export function onLinkClick(e: MouseEvent, to: string) {
  if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(to);
}
