import { useEffect, useRef, useState } from 'preact/hooks';
import { api, formatMoney, formatTime, type Money, type Problem, type Schemas } from '../client';
import { useLiveFeed, type LiveEvent } from '../live';
import { call, Link, Loading, ProblemAlert, toProblem } from '../ui';
import { statusLabel } from './orders';

type Board = Schemas['Dashboard'];

/** Figures refresh on a timer and soon after a live order event. */
const REFRESH_MS = 15_000;

export function Dashboard() {
  const [board, setBoard] = useState<Board | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const soon = useRef<number>();

  async function load() {
    try {
      setBoard(await call(api.GET('/v1/admin/dashboard')));
      setProblem(null);
    } catch (e) {
      setProblem(toProblem(e));
    }
  }

  useEffect(() => {
    load();
    const timer = window.setInterval(load, REFRESH_MS);
    return () => {
      window.clearInterval(timer);
      window.clearTimeout(soon.current);
    };
  }, []);

  const feed = useLiveFeed((e) => {
    if (e.type !== 'order.updated') return;
    window.clearTimeout(soon.current);
    soon.current = window.setTimeout(load, 500);
  });

  return (
    <>
      <h1>Dashboard</h1>
      <ProblemAlert problem={problem} />
      {!board && !problem && <Loading what="the figures" />}
      {board && (
        <section aria-label="Today's figures" class="cards">
          <Card title="Orders today" figure={String(board.orders_today)} />
          <Card title="Revenue today" figure={formatMoney(board.revenue_today)} note="Paid orders, net of refunds" />
          <Card title="Jobs waiting" figure={String(board.jobs.queued + board.jobs.scheduled + board.jobs.retrying)} note={`${board.jobs.running} running`} />
          <Card title="Dead jobs" figure={String(board.jobs.dead)} link={board.jobs.dead > 0 ? { to: '/jobs', text: 'Review dead jobs' } : undefined} />
          <Card title="Outbox lag" figure={String(board.outbox_lag_events)} note="Events not yet published" />
        </section>
      )}
      {board && <p class="muted">Today counts from {formatTime(board.since)}.</p>}
      <section class="panel" aria-labelledby="feed-title">
        <header class="panel-head">
          <h2 id="feed-title">Live events</h2>
          <span role="status" class={`badge ${feed.state === 'live' ? 'ok' : ''}`}>
            {feed.state === 'live' ? 'Live' : feed.state === 'connecting' ? 'Connecting…' : 'Reconnecting…'}
          </span>
        </header>
        <div role="log" aria-label="Live events" aria-live="polite">
          {feed.events.length === 0 ? (
            <p class="muted">No events yet: order and product changes appear here as they happen.</p>
          ) : (
            <ul class="feed">
              {feed.events.map((e) => (
                <li key={e.id}>
                  <FeedItem event={e} />
                </li>
              ))}
            </ul>
          )}
        </div>
      </section>
    </>
  );
}

function Card({ title, figure, note, link }: { title: string; figure: string; note?: string; link?: { to: string; text: string } }) {
  return (
    <div class="card">
      <h2>{title}</h2>
      <p class="figure">{figure}</p>
      {note && <small class="muted">{note}</small>}
      {link && <Link to={link.to}>{link.text}</Link>}
    </div>
  );
}

function FeedItem({ event }: { event: LiveEvent }) {
  const d = event.data;
  const time = <time dateTime={event.created_at}>{new Date(event.created_at).toLocaleTimeString()}</time>;
  if (event.type === 'order.updated') {
    return (
      <>
        {time} Order <code>{String(d.id)}</code> {statusLabel(String(d.status))}
        {d.total ? `, ${formatMoney(d.total as Money)}` : ''}
      </>
    );
  }
  if (event.type === 'product.updated') {
    return (
      <>
        {time} Product {String(d.name ?? d.id)}
        {d.price ? `: ${formatMoney(d.price as Money)}` : ''}
        {typeof d.stock_available === 'number' ? `, ${d.stock_available} in stock` : ''}
      </>
    );
  }
  return (
    <>
      {time} {event.type}
    </>
  );
}
