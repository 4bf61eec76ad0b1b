// A real OpenID provider for Proware's single sign-on tests: panva's oidc-provider, configured
// from a JSON file written by tests/oidc_support.py.
//
//   node provider.mjs CONFIG.json
//
// CONFIG.json holds:
//   issuer    the issuer URL; the tests put their tampering proxy there, so every URL the
//             provider prints (discovery, "iss", redirects) points at the proxy
//   port      where this process listens, on 127.0.0.1 only
//   jwks      a JWK Set of PRIVATE signing keys (the tests keep a copy to forge tokens with)
//   clients   client metadata (client_id, client_secret, redirect_uris, ...)
//   accounts  login name -> claims; a login not listed gets {sub: login, preferred_username: login}
//
// Sign-in is oidc-provider's devInteractions form (any login, any password). There is no consent
// page: requested scopes are granted on the spot. It prints one "ready" line when it listens,
// and exits 0 on SIGTERM or SIGINT.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';

// OpenID Connect Core 1.0 §5.4: the claims each scope value asks for.
const STANDARD_CLAIMS = {
  openid: ['sub'],
  profile: [
    'name', 'family_name', 'given_name', 'middle_name', 'nickname', 'preferred_username',
    'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
  ],
  email: ['email', 'email_verified'],
};

// Short lifetimes (seconds): a test run is minutes long, and an artifact that outlives it hides
// nothing. Codes keep oidc-provider's 60 s default, as in production.
const TTL = {
  AuthorizationCode: 60,
  IdToken: 300,
  AccessToken: 300,
  Interaction: 300,
  Session: 600,
  Grant: 600,
};

// Events whose error would otherwise vanish into a browser page or a JSON body; one line each
// in the log, so a failing test's log tail says why the provider refused.
const LOGGED_ERRORS = [
  'server_error', 'authorization.error', 'grant.error', 'userinfo.error',
  'discovery.error', 'jwks.error', 'end_session.error',
];

function readConfig(path) {
  if (!path) {
    console.error('usage: node provider.mjs CONFIG.json');
    process.exit(2);
  }
  return JSON.parse(readFileSync(path, 'utf8'));
}

function accountFinder(accounts) {
  return async function findAccount(ctx, login) {
    const claims = { sub: login, preferred_username: login, ...(accounts[login] || {}) };
    return {
      accountId: login,
      // oidc-provider filters these down to what the granted scopes allow.
      async claims() { return claims; },
    };
  };
}

// The documented way to skip consent (docs: interactions.policy, "disabling default consent
// checks"): build and save a Grant for what the client asked, so the consent prompt has nothing
// left to ask. Kept for the session, as a real consent would be.
async function grantWhatIsAsked(ctx) {
  const { oidc } = ctx;
  const existing = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  if (existing) {
    const grant = await oidc.provider.Grant.find(existing);
    if (grant) {
      return grant;
    }
  }
  const grant = new oidc.provider.Grant({
    accountId: oidc.session.accountId,
    clientId: oidc.client.clientId,
  });
  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
  grant.addOIDCClaims([...oidc.requestParamClaims]);
  await grant.save();
  return grant;
}

const config = readConfig(process.argv[2]);

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: config.jwks,
  findAccount: accountFinder(config.accounts || {}),
  claims: STANDARD_CLAIMS,
  // Put the profile and email claims in the ID Token too, not only at userinfo (oidc-provider's
  // default follows Core §5.4 strictly), so the relying party may read either.
  conformIdTokenClaims: false,
  loadExistingGrant: grantWhatIsAsked,
  // PKCE with S256 for every client, confidential ones included (RFC 9700 §2.1.1).
  pkce: { methods: ['S256'], required: () => true },
  features: {
    devInteractions: { enabled: true },
  },
  cookies: {
    // A fresh key per run: the cookies are signed, and nothing outlives the process.
    keys: [randomBytes(32).toString('base64url')],
    // v8 sends the long (session) cookie as SameSite=None, which browsers drop unless it is
    // also Secure, and over plain http it cannot be. Lax is what v9 defaults to.
    long: { httpOnly: true, sameSite: 'lax', signed: true },
    short: { httpOnly: true, sameSite: 'lax', signed: true },
  },
  ttl: TTL,
});

// Plain http on 127.0.0.1, reached through the tests' proxy, which sends no X-Forwarded-*
// headers: there is nothing to trust, and the issuer's http scheme stands.
provider.proxy = false;

for (const name of LOGGED_ERRORS) {
  provider.on(name, (ctx, error) => {
    const why = [error.error_description, error.error_detail].filter(Boolean).join('; ');
    console.error(`${name}: ${ctx.method} ${ctx.path}: ${error.message}${why ? ` (${why})` : ''}`);
  });
}

// oidc-provider checks static client metadata on first use, which would turn a bad redirect URI
// into an error page mid-test. Load each client now, so a bad one stops start-up instead.
for (const { client_id: clientId } of config.clients) {
  try {
    await provider.Client.find(clientId);
  } catch (error) {
    console.error(`client ${clientId}: ${error.message} (${error.error_description})`);
    process.exit(1);
  }
}

const server = provider.listen(config.port, HOST, () => {
  console.log(`ready: oidc-provider on http://${HOST}:${config.port}, issuer ${config.issuer}`);
});

function shutDown(signal) {
  // closeAllConnections: a keep-alive connection would hold server.close() open.
  server.close(() => process.exit(0));
  server.closeAllConnections();
  console.log(`stopping on ${signal}`);
}

process.on('SIGTERM', shutDown);
process.on('SIGINT', shutDown);
