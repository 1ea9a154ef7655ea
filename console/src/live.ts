// The back office's live feed: Server-Sent Events of /v1/admin/events, opened with a single-use
// ticket (EventSource cannot send Authorization). When the stream ends (token expiry, restart),
// it reopens with a fresh ticket and resumes after the last event seen.
import { useEffect, useState } from 'preact/hooks';
import { api } from './client';

export type LiveEvent = { id: string; type: string; data: Record<string, unknown>; created_at: string };
export type LiveState = 'connecting' | 'live' | 'reconnecting';

const KEEP = 50;

export function useLiveFeed(onEvent?: (e: LiveEvent) => void) {
  const [events, setEvents] = useState<LiveEvent[]>([]);
  const [state, setState] = useState<LiveState>('connecting');

  useEffect(() => {
    let source: EventSource | null = null;
    let timer: number | undefined;
    let stopped = false;
    let lastId = '';
    let failures = 0;

    async function open() {
      if (stopped) return;
      const { data } = await api.POST('/v1/realtime/tickets').catch(() => ({ data: undefined }));
      if (stopped) return;
      if (!data) return retry();
      const query = new URLSearchParams({ ticket: data.ticket });
      if (lastId) query.set('last_event_id', lastId);
      source = new EventSource(`/v1/admin/events?${query}`);
      source.onopen = () => {
        failures = 0;
        setState('live');
      };
      source.onmessage = (m) => {
        const event = JSON.parse(m.data) as LiveEvent | { type: 'resync' };
        if (event.type === 'resync') return;
        const e = event as LiveEvent;
        lastId = e.id;
        setEvents((list) => [e, ...list].slice(0, KEEP));
        onEvent?.(e);
      };
      // The browser would reconnect with the spent ticket: take over with a fresh one.
      source.onerror = () => {
        source?.close();
        retry();
      };
    }

    function retry() {
      if (stopped) return;
      setState('reconnecting');
      failures += 1;
      timer = window.setTimeout(open, Math.min(30_000, 500 * 2 ** Math.min(failures, 6)));
    }

    open();
    return () => {
      stopped = true;
      source?.close();
      window.clearTimeout(timer);
    };
    // The feed lives as long as the page; `onEvent` is read through the latest closure.
  }, []);

  return { events, state };
}
