import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './app.tsx';
import { loadBackend } from './backend/select.ts';
import './styles.css';

const root = createRoot(document.getElementById('root') as HTMLElement);

loadBackend()
  .then((backend) =>
    root.render(
      <StrictMode>
        <App backend={backend} />
      </StrictMode>,
    ),
  )
  .catch((error: unknown) => {
    root.render(
      <main className="page" id="main">
        <h1>NeuroCAAS cannot start</h1>
        <p role="alert">{error instanceof Error ? error.message : String(error)}</p>
      </main>,
    );
  });
