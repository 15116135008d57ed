// A real OpenID Connect provider (the OpenID-certified `oidc-provider` package) for the tests.
//
//   node provider.mjs PORT JWKS_FILE [--access-ttl SECONDS] [--redirect-uri URL]...
//
// Listens on 127.0.0.1:PORT with the issuer http://127.0.0.1:PORT and signs with the private keys in
// JWKS_FILE (written by the test, so that it can restart the provider with another key). Clients use the
// client_credentials grant with a resource indicator; access tokens are JWTs whose audience is that resource
// and which carry the client's roles (from its `tvilling_roles` metadata) in `roles` and in
// `realm_access.roles`, and its `tvilling_username` (if any) as `preferred_username`.
//
// People sign in with the authorisation code flow and PKCE (required) through the development login form
// and consent page (any password); the clients `dashboard` (public: token endpoint auth `none`) and
// `dashboard-confidential` (secret `dashboard-confidential-secret`, `client_secret_basic`) may send them back
// to each --redirect-uri (also from the env OIDC_REDIRECT_URIS, space-separated). An account's roles come
// from its name (ACCOUNTS below; any other name has none), in the `roles` claim of its ID token and access
// tokens.
// GET /_stats answers how many times the JWKS was fetched (the tests check the verifier's rate limit).
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

function parseArgs(argv) {
  const [port, jwksFile, ...rest] = argv;
  let accessTtl = 300;
  const redirectUris = (process.env.OIDC_REDIRECT_URIS ?? '').split(' ').filter(Boolean);
  for (let i = 0; i < rest.length; i += 1) {
    if (rest[i] === '--access-ttl') {
      accessTtl = Number(rest[i + 1]);
      i += 1;
    } else if (rest[i] === '--redirect-uri') {
      redirectUris.push(rest[i + 1]);
      i += 1;
    } else {
      throw new Error(`unknown option ${rest[i]}`);
    }
  }
  if (!port || !jwksFile || !Number.isInteger(accessTtl) || accessTtl < 1) {
    throw new Error('usage: node provider.mjs PORT JWKS_FILE [--access-ttl SECONDS] [--redirect-uri URL]...');
  }
  return { port: Number(port), jwksFile, accessTtl, redirectUris };
}

// The people who can sign in, by name, and their roles.
const ACCOUNTS = {
  eva: ['operator'],
  ann: ['viewer'],
  erik: ['engineer'],
  ada: ['admin'],
};

function dashboard(id, redirectUris, secret) {
  return {
    client_id: id,
    ...(secret ? { client_secret: secret } : {}),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: redirectUris,
    token_endpoint_auth_method: secret ? 'client_secret_basic' : 'none',
  };
}

function client(id, roles, username) {
  return {
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_post',
    tvilling_roles: roles,
    ...(username ? { tvilling_username: username } : {}),
  };
}

const { port, jwksFile, accessTtl, redirectUris } = parseArgs(process.argv.slice(2));
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  jwks: JSON.parse(readFileSync(jwksFile, 'utf8')),
  cookies: { keys: ['tvilling-test-cookie-key'] },
  clients: [
    client('ops', ['operator', 'viewer', 'superuser']),
    client('alice', 'engineer admin', 'alice'),
    client('nobody', []),
    ...(redirectUris.length ? [dashboard('dashboard', redirectUris),
      dashboard('dashboard-confidential', redirectUris, 'dashboard-confidential-secret')] : []),
  ],
  extraClientMetadata: { properties: ['tvilling_roles', 'tvilling_username'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, roles: ACCOUNTS[id] ?? [] };
      },
    };
  },
  claims: { openid: ['sub', 'roles'], profile: ['preferred_username'] },
  conformIdTokenClaims: false, // the ID token carries the scopes' claims (roles) with the code flow too
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true }, // the login form (any password) and the consent page
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'http://127.0.0.1/tvilling',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api',
        accessTokenFormat: 'jwt',
        accessTokenTTL: accessTtl,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  ttl: { ClientCredentials: () => accessTtl },
  async extraTokenClaims(ctx, token) {
    if (token.accountId) { // a person's access token (authorisation code flow)
      const roles = ACCOUNTS[token.accountId] ?? [];
      return { roles, realm_access: { roles }, preferred_username: token.accountId };
    }
    const found = ctx.oidc.client ?? (await ctx.oidc.provider.Client.find(token.clientId));
    const roles = found?.tvilling_roles ?? [];
    const claims = { roles, realm_access: { roles } };
    if (found?.tvilling_username) {
      claims.preferred_username = found.tvilling_username;
    }
    return claims;
  },
});

let jwksFetches = 0;
provider.use(async (ctx, next) => {
  if (ctx.path === '/_stats') {
    ctx.body = { jwks_fetches: jwksFetches };
    return;
  }
  if (ctx.path === '/jwks') {
    jwksFetches += 1;
  }
  await next();
});

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
