import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));

/** The web app: web/ -> dist/web/ (served by `neurocaas ui`, uploaded by the WebStack). */
export default defineConfig({
  root,
  base: './',
  plugins: [react()],
  publicDir: 'public',
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 900,
    reportCompressedSize: false,
    rolldownOptions: {
      output: {
        codeSplitting: {
          // The AWS SDK and the sign-in client go in chunks named aws-*, loaded only by backend/aws.ts
          // (bench/web-bundle.ts counts them apart from the local app).
          groups: [{ name: 'aws-sdk', test: /node_modules[\\/](@aws-sdk|@smithy|@aws-crypto|@aws|oidc-client-ts)[\\/]/ }],
        },
      },
    },
  },
  server: { host: '127.0.0.1' },
});
