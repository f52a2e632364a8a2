// A real OpenID Connect provider (oidc-provider 9) for end-to-end tests: the *upstream* identity provider.
//
// Started as `node oidc_upstream.mjs` with Node 22. Configuration comes from the environment:
//   PORT              required; listens on 127.0.0.1 only, issuer is http://127.0.0.1:<PORT>
//   CLIENT_ID         required; the one registered client (confidential, client_secret_post; basic works too)
//   CLIENT_SECRET     required
//   REDIRECT_URI      required; one or more redirect URIs, comma-separated
//   ACCESS_TOKEN_TTL  optional; access token lifetime in seconds (default 3600)
//   CLOCK_TOLERANCE   optional; seconds of leeway on expiry checks (default 0 here; oidc-provider's own default
//                     of 15 would keep an expired opaque access token working for 15 more seconds)
//   ROTATE_REFRESH_TOKEN  optional; "1" rotates the refresh token on every use, "0" never does,
//                     unset keeps oidc-provider's default (confidential clients: not until 70% of its life)
//   CONFORM_ID_TOKEN_CLAIMS  optional; "0" also puts scope claims (name, email) in the ID token,
//                     default "1": the ID token carries only sub & co and the rest comes from userinfo
//   RESOURCE          optional; a resource indicator (RFC 8707), e.g. an MCP server's http://127.0.0.1:<port>/mcp.
//                     Set, the provider is that resource's authorization server: a `resource` parameter naming it
//                     gets a JWT access token (RFC 9068, RS256) with aud = RESOURCE; any other resource is
//                     invalid_target. Unset, resource parameters are ignored and access tokens are opaque.
//   RESOURCE_SCOPES   optional; the scopes that resource knows (default "notes:read notes:write")
//   RESOURCE_TOKEN_FORMAT  optional; "jwt" (default) or "opaque": opaque access tokens for RESOURCE, which the
//                     resource checks by introspection (any confidential client, such as CLIENT_ID, may introspect)
//   REGISTRATION      optional; "1" opens dynamic client registration (RFC 7591) at /reg, for MCP clients
//
// Logins go through oidc-provider's devInteractions: any login name, any password, then a consent page.
// Once listening it prints exactly one line, `READY http://127.0.0.1:<PORT>`, to stdout; errors go to stderr.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

function fail(message) {
  process.stderr.write(`oidc_upstream: ${message}\n`);
  process.exit(2);
}

function required(name) {
  const value = process.env[name];
  if (!value) fail(`environment variable ${name} is required`);
  return value;
}

const port = Number.parseInt(required('PORT'), 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) fail(`PORT is not a port number: ${process.env.PORT}`);
const clientId = required('CLIENT_ID');
const clientSecret = required('CLIENT_SECRET');
const redirectUris = required('REDIRECT_URI').split(',').map((uri) => uri.trim()).filter(Boolean);
if (redirectUris.length === 0) fail('REDIRECT_URI names no URI');

let accessTokenTtl = 3600;
if (process.env.ACCESS_TOKEN_TTL) {
  accessTokenTtl = Number.parseInt(process.env.ACCESS_TOKEN_TTL, 10);
  if (!Number.isInteger(accessTokenTtl) || accessTokenTtl <= 0) {
    fail(`ACCESS_TOKEN_TTL must be a positive number of seconds: ${process.env.ACCESS_TOKEN_TTL}`);
  }
}

let clockTolerance = 0;
if (process.env.CLOCK_TOLERANCE) {
  clockTolerance = Number.parseInt(process.env.CLOCK_TOLERANCE, 10);
  if (!Number.isInteger(clockTolerance) || clockTolerance < 0) {
    fail(`CLOCK_TOLERANCE must be a number of seconds: ${process.env.CLOCK_TOLERANCE}`);
  }
}

const issuer = `http://127.0.0.1:${port}`;
const resource = process.env.RESOURCE;
const resourceScopes = process.env.RESOURCE_SCOPES ?? 'notes:read notes:write';
const resourceTokenFormat = process.env.RESOURCE_TOKEN_FORMAT ?? 'jwt';
if (!['jwt', 'opaque'].includes(resourceTokenFormat)) fail(`RESOURCE_TOKEN_FORMAT must be jwt or opaque`);

// A signing key of our own rather than oidc-provider's development keys (which it warns about).
const signingKey = {
  ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: crypto.randomBytes(8).toString('hex'),
  alg: 'RS256',
  use: 'sig',
};

function displayName(login) {
  return login.charAt(0).toUpperCase() + login.slice(1);
}

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      // oidc-provider 9 accepts client_secret_basic as well for a client registered with client_secret_post.
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],

  // Any login name is an account whose sub is that login name.
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims(_use, _scope, _claims, _rejected) {
        return {
          sub: id,
          name: displayName(id),
          email: `${id}@example.test`,
          email_verified: true,
        };
      },
    };
  },

  claims: {
    openid: ['sub'],
    profile: ['name'],
    email: ['email', 'email_verified'],
  },
  // profile and email come from `claims`; notes:read is listed here so it is a known scope that is consented to,
  // granted and carried in the (opaque) access token's scope. Scopes not configured anywhere are dropped silently.
  // With RESOURCE set, notes:read is also that resource's scope. Listing it here lets a client register with it
  // (registration refuses scopes not listed here); notes:write stays unlisted, because a client's registered scope
  // caps only the scopes listed here, so a client registered for notes:read can still step up to notes:write.
  scopes: ['openid', 'offline_access', 'notes:read'],

  conformIdTokenClaims: process.env.CONFORM_ID_TOKEN_CLAIMS !== '0',

  // A refresh token for every code exchange by a client allowed the refresh_token grant, offline_access or not
  // (the default issues one only when offline_access was requested and granted).
  async issueRefreshToken(_ctx, client, _code) {
    return client.grantTypeAllowed('refresh_token');
  },

  // Only the authorization code flow (the default also lists implicit and hybrid response types).
  responseTypes: ['code'],

  pkce: {
    // PKCE is required for every authorization code request, confidential client or not (only S256 exists in v9).
    required: () => true,
  },

  ttl: {
    AccessToken: accessTokenTtl,
  },
  clockTolerance,

  cookies: {
    // Cookies are marked Secure only when the request is https (ctx.secure), so on http://127.0.0.1 they are not.
    keys: [crypto.randomBytes(32).toString('base64url')],
  },

  features: {
    devInteractions: { enabled: true },
    introspection: {
      enabled: true,
      // Any authenticated confidential client may introspect (the default, spelled out to silence the warning).
      allowedPolicy: async (ctx, client, token) => !(
        client.clientAuthMethod === 'none' && token.clientId !== ctx.oidc.client.clientId
      ),
    },
    revocation: {
      enabled: true,
      allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
    },
    // Off unless RESOURCE is set, so a `resource` parameter (RFC 8707) is ignored instead of answered with
    // invalid_target: every access token is then an opaque token for the userinfo endpoint.
    resourceIndicators: resource
      ? {
        enabled: true,
        // An authorization request naming no resource is for this one (when there is only one to choose).
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => {
          if (indicator !== resource) throw new errors.InvalidTarget();
          return {
            scope: resourceScopes,
            audience: resource,
            accessTokenTTL: accessTokenTtl,
            accessTokenFormat: resourceTokenFormat,
            ...(resourceTokenFormat === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
          };
        },
      }
      : { enabled: false },
    registration: { enabled: process.env.REGISTRATION === '1' },
  },
  jwks: { keys: [signingKey] },
};

if (process.env.ROTATE_REFRESH_TOKEN === '1') configuration.rotateRefreshToken = true;
else if (process.env.ROTATE_REFRESH_TOKEN === '0') configuration.rotateRefreshToken = false;

const provider = new Provider(issuer, configuration);
provider.proxy = false;

for (const event of [
  'server_error',
  'authorization.error',
  'grant.error',
  'userinfo.error',
  'introspection.error',
  'revocation.error',
  'end_session.error',
  'discovery.error',
  'jwks.error',
  'backchannel.error',
]) {
  provider.on(event, (ctx, error) => {
    const detail = error?.error_description ? ` (${error.error_description})` : '';
    process.stderr.write(`oidc_upstream: ${event} ${ctx?.method ?? ''} ${ctx?.path ?? ''}: ${error?.message ?? error}${detail}\n`);
    if (event === 'server_error' && error?.stack) process.stderr.write(`${error.stack}\n`);
  });
}

const server = http.createServer(provider.callback());

server.on('error', (error) => {
  process.stderr.write(`oidc_upstream: ${error.stack ?? error}\n`);
  process.exit(1);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
