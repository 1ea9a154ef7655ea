import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import './style.css';
import { currentUser, isAdmin, isStaff, onSessionChange, resumeSession, signOut, type Me } from './client';
import { Link, Loading } from './ui';
import { navigate, useRoute } from './router';
import { SignIn } from './pages/signin';
import { Orders } from './pages/orders';
import { Dashboard } from './pages/dashboard';
import { Users } from './pages/users';
import { Products } from './pages/products';
import { Pricing } from './pages/pricing';
import { Jobs } from './pages/jobs';
import { Webhooks } from './pages/webhooks';
import { Audit } from './pages/audit';
import { ApiKeys } from './pages/apikeys';
import { Passkeys } from './pages/passkeys';

type Page = { path: string; title: string; adminOnly?: boolean; view: (props: { user: Me; admin: boolean }) => preact.JSX.Element };

/** The pages, in the order of the navigation. Support reads every page whose routes it may
 *  read; the webhook, audit and API key routes are admin only, so their pages are too. Every staff user
 *  manages their own passkeys. */
const PAGES: Page[] = [
  { path: '/', title: 'Dashboard', view: Dashboard },
  { path: '/orders', title: 'Orders', view: Orders },
  { path: '/users', title: 'Users', view: Users },
  { path: '/products', title: 'Products', view: Products },
  { path: '/pricing', title: 'Pricing rules', view: Pricing },
  { path: '/jobs', title: 'Jobs', view: Jobs },
  { path: '/webhooks', title: 'Webhooks', adminOnly: true, view: Webhooks },
  { path: '/audit', title: 'Audit log', adminOnly: true, view: Audit },
  { path: '/api-keys', title: 'API keys', adminOnly: true, view: ApiKeys },
  { path: '/passkeys', title: 'Your passkeys', view: Passkeys },
];

function useUser(): { user: Me | null; resumed: boolean } {
  const [user, setUser] = useState(currentUser);
  const [resumed, setResumed] = useState(false);
  useEffect(() => {
    const off = onSessionChange(() => setUser(currentUser()));
    resumeSession().finally(() => setResumed(true));
    return off;
  }, []);
  return { user, resumed };
}

function App() {
  const { user, resumed } = useUser();
  const route = useRoute();
  const pages = PAGES.filter((p) => !p.adminOnly || isAdmin(user));
  const page = pages.find((p) => p.path !== '/' && (route.path === p.path || route.path.startsWith(`${p.path}/`))) ?? pages[0];

  useEffect(() => {
    document.title = user ? `${page.title} · Keel admin` : 'Sign in · Keel admin';
  }, [user, page]);

  // After a navigation, focus goes to the new page (a screen reader reads it from its heading).
  const first = useRef(true);
  useEffect(() => {
    if (first.current) return void (first.current = false);
    document.getElementById('main')?.focus();
  }, [page.path]);

  if (!resumed) return <Loading what="the console" />;
  if (!user) return <SignIn />;
  if (!isStaff(user)) return <NotStaff user={user} />;

  const View = page.view;
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Keel admin</span>
        <nav aria-label="Sections">
          <ul>
            {pages.map((p) => (
              <li key={p.path}>
                <Link to={p.path} current={p === page}>
                  {p.title}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span>
            {user.email} <span class="role">({isAdmin(user) ? 'admin' : 'support'})</span>
          </span>
          <button type="button" onClick={() => signOut().then(() => navigate('/', true))}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <View key={page.path} user={user} admin={isAdmin(user)} />
      </main>
    </>
  );
}

function NotStaff({ user }: { user: Me }) {
  return (
    <main id="main" class="narrow">
      <h1>Not for this account</h1>
      <p role="alert">
        {user.email} has no support or admin role: the console is for the people who run the shop.
      </p>
      <button type="button" onClick={() => signOut()}>
        Sign out
      </button>
    </main>
  );
}

render(<App />, document.getElementById('app')!);
