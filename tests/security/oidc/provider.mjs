// A real OpenID Connect provider (the OpenID-certified `oidc-provider` package) for the tests.
//
//   node provider.mjs PORT JWKS_FILE [--access-ttl SECONDS]
//
// Listens on 127.0.0.1:PORT with the issuer http://127.0.0.1:PORT and signs with the private keys in
// JWKS_FILE (written by the test, so that it can restart the provider with another key). Clients use the
// client_credentials grant with a resource indicator; access tokens are JWTs whose audience is that resource
// and which carry the client's roles (from its `tvilling_roles` metadata) in `roles` and in
// `realm_access.roles`, and its `tvilling_username` (if any) as `preferred_username`.
// GET /_stats answers how many times the JWKS was fetched (the tests check the verifier's rate limit).
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

function parseArgs(argv) {
  const [port, jwksFile, ...rest] = argv;
  let accessTtl = 300;
  for (let i = 0; i < rest.length; i += 1) {
    if (rest[i] === '--access-ttl') {
      accessTtl = Number(rest[i + 1]);
      i += 1;
    } else {
      throw new Error(`unknown option ${rest[i]}`);
    }
  }
  if (!port || !jwksFile || !Number.isInteger(accessTtl) || accessTtl < 1) {
    throw new Error('usage: node provider.mjs PORT JWKS_FILE [--access-ttl SECONDS]');
  }
  return { port: Number(port), jwksFile, accessTtl };
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

const { port, jwksFile, accessTtl } = parseArgs(process.argv.slice(2));
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  jwks: JSON.parse(readFileSync(jwksFile, 'utf8')),
  cookies: { keys: ['tvilling-test-cookie-key'] },
  clients: [
    client('ops', ['operator', 'viewer', 'superuser']),
    client('alice', 'engineer admin', 'alice'),
    client('nobody', []),
  ],
  extraClientMetadata: { properties: ['tvilling_roles', 'tvilling_username'] },
  features: {
    devInteractions: { enabled: false },
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
