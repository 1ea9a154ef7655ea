import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './style.css';
import { currentUser, isAdmin, isStaff, onSessionChange, resumeSession, signOut, type Me } from './client';
import { Link, Loading } from './ui';
import { navigate, useRoute } from './router';
import { SignIn } from './pages/signin';
import { Orders } from './pages/orders';

/** The pages, in the order of the navigation. */
const PAGES: { path: string; title: string; view: (props: { user: Me; admin: boolean }) => preact.JSX.Element }[] = [
  { path: '/orders', title: 'Orders', view: Orders },
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
  const page = PAGES.find((p) => route.path === p.path || route.path.startsWith(`${p.path}/`)) ?? PAGES[0];

  useEffect(() => {
    document.title = user ? `${page.title} · Keel admin` : 'Sign in · Keel admin';
  }, [user, page]);

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
            {PAGES.map((p) => (
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
        <View user={user} admin={isAdmin(user)} />
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
