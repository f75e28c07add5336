// A relying party written with panva's openid-client (v6), as its README shows one.
//
//   node openid_client_rp.mjs ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI LOGOUT_URI SCOPE
//
// Run by tests/interop/test_relying_party_libraries.py. It prints one JSON line with the
// authorization URL, reads the callback URL the browser was sent to from standard input, then
// exchanges the code, validates the ID token (openid-client does: signature and algorithm from
// discovery, iss, aud, exp, nonce), calls userinfo, introspects, refreshes, revokes and builds
// the end-session URL; a second JSON line reports what each step got.
//
// Nothing is configured beyond the defaults but allowInsecureRequests: the test server is
// plain http on localhost. The client secret is sent as client_secret_post, openid-client's
// default, for which the test registers the client.

import * as oidc from "openid-client";
import { createInterface } from "node:readline";

const [issuer, clientId, clientSecret, redirectUri, logoutUri, scope] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function report(document) {
  process.stdout.write(JSON.stringify(document) + "\n");
}

async function refusal(action) {
  try {
    await action();
    return null;
  } catch (error) {
    return { name: error.name, status: error.status ?? error.response?.status ?? null };
  }
}

const config = await oidc.discovery(new URL(issuer), clientId, clientSecret, undefined, {
  execute: [oidc.allowInsecureRequests], // only because the test server is plain http
});
const codeVerifier = oidc.randomPKCECodeVerifier();
const state = oidc.randomState();
const nonce = oidc.randomNonce();
const authorizationUrl = oidc.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope,
  state,
  nonce,
  prompt: "consent",
  code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
  code_challenge_method: "S256",
});
report({ authorization_url: authorizationUrl.href });

const callback = (await lines.next()).value;
const tokens = await oidc.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: codeVerifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const claims = tokens.claims();
const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
const introspected = await oidc.tokenIntrospection(config, tokens.access_token);
const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
const userinfoAfterRefresh = await oidc.fetchUserInfo(config, refreshed.access_token, claims.sub);
await oidc.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: "refresh_token" });
const afterRevocation = {
  refresh_token: await oidc.tokenIntrospection(config, refreshed.refresh_token),
  access_token: await oidc.tokenIntrospection(config, refreshed.access_token),
};
const userinfoRevoked = await refusal(() =>
  oidc.fetchUserInfo(config, refreshed.access_token, claims.sub),
);
const endSessionUrl = oidc.buildEndSessionUrl(config, {
  id_token_hint: tokens.id_token,
  post_logout_redirect_uri: logoutUri,
  state: "bye-openid-client",
});
report({
  id_token_header: JSON.parse(Buffer.from(tokens.id_token.split(".")[0], "base64url")),
  claims,
  userinfo,
  introspected,
  refreshed: {
    new_access_token: refreshed.access_token !== tokens.access_token,
    new_refresh_token: refreshed.refresh_token !== tokens.refresh_token,
  },
  userinfo_after_refresh: userinfoAfterRefresh,
  after_revocation: afterRevocation,
  userinfo_revoked: userinfoRevoked,
  end_session_url: endSessionUrl.href,
});
process.exit(0);
