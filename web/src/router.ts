import { Store, useStore } from './store';

/** History routing (the server answers every unknown path with index.html). */

export interface Route {
  path: string;
  query: URLSearchParams;
}

const read = (): Route => ({ path: location.pathname.replace(/\/+$/, '') || '/', query: new URLSearchParams(location.search) });

export const route = new Store<Route>(read());

window.addEventListener('popstate', () => route.set(read()));

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  const current = location.pathname + location.search;
  if (to === current) return;
  if (options.replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  route.set(read());
  if (!options.replace) window.scrollTo(0, 0);
}

/** Replaces the query string (filters, paging), keeping the path; no new history entry by default. */
export function setQuery(params: Record<string, string | number | undefined | null>, options: { push?: boolean } = {}): void {
  const query = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') query.delete(key);
    else query.set(key, String(value));
  }
  const qs = query.toString();
  navigate(location.pathname + (qs ? `?${qs}` : ''), { replace: !options.push });
}

export function useRoute(): Route {
  return useStore(route);
}

/** Left clicks without modifiers on same-origin links are handled here, not by a page load. */
export function handleLinkClick(event: MouseEvent): void {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = (event.target as Element | null)?.closest?.('a');
  if (!anchor || anchor.target || anchor.hasAttribute('download')) return;
  const href = anchor.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith('//') || href.startsWith('/docs') || href.startsWith('/api')) return;
  event.preventDefault();
  navigate(href);
}

export const href = (path: string, query?: Record<string, string | number | undefined | null>): string => {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query))
    if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
};
