/**
 * The app's aws backend (D11): signs in with Cognito (authorization code + PKCE against the
 * hosted pages, oidc-client-ts), exchanges the ID token for identity-pool credentials (the
 * session is tagged with the user's group and name, which is all the researcher policy reads)
 * and talks to S3 directly through S3WebBackend (aws-s3.ts), over lib/client.
 *
 * The sign-in cannot run on the test machines (no Cognito there): aws-s3.ts is tested against
 * the emulator with static credentials instead (test/web/backend/aws-s3.test.ts), save-stream.ts
 * in Chromium (test/web/backend/save-stream.test.ts).
 */
import { S3Client } from '@aws-sdk/client-s3';
import { fromCognitoIdentityPool } from '@aws-sdk/credential-providers';
import { UserManager, WebStorageStateStore } from 'oidc-client-ts';
import { resultsZipName, S3WebBackend, toBackendError } from './aws-s3.ts';
import { saveStream } from './save-stream.ts';
import { BackendError, type RuntimeConfig, type WebBackend } from './types.ts';

type AwsConfig = Extract<RuntimeConfig, { backend: 'aws' }>;

/** analyses.json, written next to the app by the same deployment as config.json. */
async function fetchCatalog(): Promise<unknown> {
  const response = await fetch('./analyses.json', { cache: 'no-store' });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return response.json();
}

export async function createAwsBackend(config: AwsConfig): Promise<WebBackend> {
  const issuer = `cognito-idp.${config.region}.amazonaws.com/${config.userPoolId}`;
  const here = `${window.location.origin}/`;
  const users = new UserManager({
    authority: `https://${issuer}`,
    client_id: config.userPoolClientId,
    redirect_uri: here,
    post_logout_redirect_uri: here,
    response_type: 'code',
    scope: 'openid email profile',
    // Tokens live in this tab only.
    userStore: new WebStorageStateStore({ store: window.sessionStorage }),
  });
  const params = new URLSearchParams(window.location.search);
  let user = params.has('code') ? await users.signinRedirectCallback() : await users.getUser();
  if (params.has('code')) window.history.replaceState(null, '', here);
  if (!user || user.expired) {
    await users.signinRedirect();
    throw new BackendError('SigningIn', 'redirecting to the sign-in page', 401);
  }
  const name = user.profile['cognito:username'];
  const group = user.profile['custom:group'];
  if (typeof name !== 'string' || typeof group !== 'string' || group === '') {
    throw new BackendError('NotAResearcher', 'your account has no NeuroCAAS group; ask your admin to add you to users/ with your group and redeploy', 403);
  }
  const idToken = user.id_token as string;
  const s3 = new S3Client({
    region: config.region,
    credentials: fromCognitoIdentityPool({ clientConfig: { region: config.region }, identityPoolId: config.identityPoolId, logins: { [issuer]: idToken } }),
  });
  const s3web = new S3WebBackend({ s3, identity: { user: name, group }, analyses: config.analyses, catalog: fetchCatalog });
  return {
    kind: 'aws',
    // The sha256 is metadata fixed at CreateMultipartUpload: the uploader hashes before sending.
    serverHashes: false,
    session: () => s3web.session(),
    analyses: () => s3web.analyses(),
    listObjects: (a, kind) => s3web.listObjects(a, kind),
    objectExists: (a, kind, n, sha) => s3web.objectExists(a, kind, n, sha),
    putObject: (a, kind, n, body, options) => s3web.putObject(a, kind, n, body, options),
    startUpload: (a, request) => s3web.startUpload(a, request),
    uploadPart: (id, n, body, options) => s3web.uploadPart(id, n, body, options),
    listParts: (id) => s3web.listParts(id),
    completeUpload: (id, parts) => s3web.completeUpload(id, parts),
    abortUpload: (id) => s3web.abortUpload(id),
    saveConfig: (a, n, c) => s3web.saveConfig(a, n, c),
    validateConfig: (a, text, format) => s3web.validateConfig(a, text, format),
    estimate: (a, request) => s3web.estimate(a, request),
    submit: (a, request) => s3web.submit(a, request),
    jobs: (scope) => s3web.jobs(scope),
    job: (id) => s3web.job(id),
    followJob: (id, onEvent, onError) => s3web.followJob(id, onEvent, onError),
    cancelJob: (id, reason) => s3web.cancelJob(id, reason),
    results: (id) => s3web.results(id),
    resultBlob: (id, path, options) => s3web.resultBlob(id, path, options),
    resultDownloadUrl: (id, path) => s3web.resultDownloadUrl(id, path),
    // The zip is made here, streamed into the file the researcher picks (save-stream.ts): no URL to follow.
    resultsZipUrl: async (id) => {
      try {
        await saveStream(resultsZipName(id), 'application/zip', async () => (await s3web.resultsZip(id)).stream);
      } catch (error) {
        throw toBackendError(error, `downloading the results of job ${id}`);
      }
      return undefined;
    },
    budget: () => s3web.budget(),
  };
}
