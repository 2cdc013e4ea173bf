// Cross-library JWE vectors for jwtd's decryption core (src/verify/jwe.rs),
// made by an independent implementation: panva/jose on Node.
//
//   cd tests/conformance/jwe/jose && npm ci && node generate.mjs
//
// writes ../jose.json (see README.md here). Every key is a fresh throwaway
// test key; each run gives new keys and tokens, so the committed jose.json
// is the fixed vector set and this script is how it was made.
//
// Every "decrypt" case is decrypted back with jose before it is written, and
// every "refuse" case is checked to be a genuine jose token (jose decrypts
// it when allowed to) or, for the edited-header cases, to be refused by jose
// too. The script fails rather than write a vector that does not hold.

import { writeFileSync } from 'node:fs';
import * as jose from 'jose';
import {
  ALGS, CLAIMS, ENCS, PLAINTEXT, checkDecrypts, checkRefused, dec8, enc8, encrypt, freshKey,
  here, joseVersion, kidFor, label, partyInfo,
} from './lib.mjs';


const cases = [];

// 1. Every alg x enc.
for (const spec of ALGS) {
  for (const enc of ENCS) {
    const name = label(spec, enc);
    const [key, exported] = await freshKey(spec, enc);
    const kid = kidFor(name.replaceAll('/', '-'));
    const jwk = { ...exported, kid, alg: spec.alg, use: 'enc' };
    const token = await encrypt(PLAINTEXT, key, { alg: spec.alg, enc, kid }, partyInfo(spec));
    await checkDecrypts(name, token, jwk, spec.alg, PLAINTEXT);
    cases.push({
      name,
      alg: spec.alg,
      enc,
      key: jwk,
      token,
      nested: false,
      expect: 'decrypt',
      why: `jose CompactEncrypt, ${spec.alg}${spec.crv ? ` on ${spec.crv}` : ''}${spec.party ? ' with apu/apv' : ''}, ${enc}; JWK as jose exports it plus kid, alg, use`,
    });
  }
}

// 2. One nested JWT per alg: a JWE (cty JWT) of an ES256 JWS. The JWE key is
// exactly what jose exports plus a kid (no alg, no use), so the key serves
// by its material alone.
for (const [i, spec] of ALGS.entries()) {
  const enc = ENCS[i % ENCS.length];
  const name = `nested ${label(spec, enc)}`;
  const signing = await jose.generateKeyPair('ES256', { extractable: true });
  const signingKid = kidFor('signing-es256');
  const signingJwk = { ...(await jose.exportJWK(signing.publicKey)), kid: signingKid, alg: 'ES256', use: 'sig' };
  const jws = await new jose.SignJWT(CLAIMS)
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: signingKid })
    .sign(signing.privateKey);
  await jose.jwtVerify(jws, signing.publicKey, { issuer: CLAIMS.iss, currentDate: new Date(1_700_000_000_000) });
  const [key, exported] = await freshKey(spec, enc);
  const kid = kidFor(`nested-${name.slice(7).replaceAll('/', '-')}`);
  const jwk = { ...exported, kid };
  const token = await encrypt(jws, key, { alg: spec.alg, enc, cty: 'JWT', kid }, partyInfo(spec));
  await checkDecrypts(name, token, jwk, spec.alg, jws);
  cases.push({
    name,
    alg: spec.alg,
    enc,
    key: jwk,
    token,
    nested: true,
    signing_jwk: signingJwk,
    expect: 'decrypt',
    why: `jose CompactEncrypt with cty JWT of a jose SignJWT ES256 token (${JSON.stringify(CLAIMS)}); JWK as jose exports it plus kid`,
  });
}

// 3. RSA keys whose private members are shorter than the modulus halves.
// JWK integers are minimal big-endian (Base64urlUInt, RFC 7518 2 and
// 6.3.2): about one key in 256 has a d, dp, dq or qi whose top byte would
// be zero, and jose (WebCrypto) writes it one byte shorter. The keys above
// are all full-length, so search for one of each (a few hundred keys).
{
  const full = { d: 256, dp: 128, dq: 128, qi: 128 };
  const found = new Map();
  const MAX_KEYS = 4000;
  let tried = 0;
  while (found.size < Object.keys(full).length && tried < MAX_KEYS) {
    tried++;
    const alg = tried % 2 ? 'RSA-OAEP-256' : 'RSA-OAEP';
    const { publicKey, privateKey } = await jose.generateKeyPair(alg, { modulusLength: 2048, extractable: true });
    const exported = await jose.exportJWK(privateKey);
    const short = Object.entries(full).find(
      ([m, len]) => !found.has(m) && jose.base64url.decode(exported[m]).length < len,
    );
    if (short) found.set(short[0], { alg, publicKey, exported, len: jose.base64url.decode(exported[short[0]]).length, at: tried });
  }
  for (const member of Object.keys(full)) {
    if (!found.has(member)) console.warn(`no RSA key with a short ${member} in ${MAX_KEYS} keys: case left out`);
  }
  for (const [member, { alg, publicKey, exported, len, at }] of found) {
    const enc = member.startsWith('d') ? 'A256GCM' : 'A128CBC-HS256';
    const name = `${alg}/${enc} short ${member}`;
    const kid = kidFor(`short-${member}`);
    const jwk = { ...exported, kid, alg, use: 'enc' };
    const token = await encrypt(PLAINTEXT, publicKey, { alg, enc, kid });
    await checkDecrypts(name, token, jwk, alg, PLAINTEXT);
    cases.push({
      name,
      alg,
      enc,
      key: jwk,
      token,
      nested: false,
      expect: 'decrypt',
      why: `an RSA 2048 key whose "${member}" is ${len} bytes, not ${full[member]} (minimal Base64urlUInt, as jose exports it); key ${at} of the ${tried} generated to find all four`,
    });
  }
}

// 4. Refusals jose can make.
//
// RSA1_5: jose 6 has no RSA1_5 at all (its JWE table lists RSA-OAEP,
// RSA-OAEP-256/384/512, ECDH-ES*, A*KW, A*GCMKW, PBES2-*, dir), so no case
// here; tests/conformance/jwe/vectors.json has two published RSA1_5 tokens.
{
  const [key] = await freshKey({ alg: 'RSA-OAEP' });
  const made = await encrypt(PLAINTEXT, key, { alg: 'RSA1_5', enc: 'A128CBC-HS256' }).catch((err) => {
    if (err.code !== 'ERR_JOSE_NOT_SUPPORTED') throw err;
  });
  if (made) throw new Error(`jose ${joseVersion} makes RSA1_5 tokens: add one as a refuse case`);
}

// PBES2-HS256+A128KW, p2c 1000, with a 16-byte password (so that the same
// bytes also load as an oct key: the refusal must not depend on the key).
{
  const password = crypto.getRandomValues(new Uint8Array(16));
  const kid = kidFor('pbes2');
  const jwk = { kty: 'oct', k: jose.base64url.encode(password), kid };
  const token = await encrypt(PLAINTEXT, password, { alg: 'PBES2-HS256+A128KW', enc: 'A128GCM', kid }, { p2c: 1000 });
  await checkDecrypts('pbes2', token, jwk, 'PBES2-HS256+A128KW', PLAINTEXT, {
    keyManagementAlgorithms: ['PBES2-HS256+A128KW'],
  });
  cases.push({
    name: 'refuse PBES2-HS256+A128KW p2c 1000',
    alg: 'PBES2-HS256+A128KW',
    enc: 'A128GCM',
    key: jwk,
    token,
    nested: false,
    expect: 'refuse',
    why: 'PBES2: the sender chooses the work (p2c); refused from the header alone. key is the password as an oct JWK; jose decrypts the token with it',
  });
}

// zip: DEF (jose 6 still compresses, with CompressionStream deflate-raw).
{
  const spec = { alg: 'A128KW' };
  const [key, exported] = await freshKey(spec);
  const kid = kidFor('zip-def');
  const jwk = { ...exported, kid, alg: 'A128KW', use: 'enc' };
  const token = await encrypt(PLAINTEXT.repeat(4), key, { alg: 'A128KW', enc: 'A128GCM', zip: 'DEF', kid });
  await checkDecrypts('zip', token, jwk, 'A128KW', PLAINTEXT.repeat(4));
  cases.push({
    name: 'refuse zip DEF (A128KW/A128GCM)',
    alg: 'A128KW',
    enc: 'A128GCM',
    key: jwk,
    token,
    nested: false,
    expect: 'refuse',
    why: 'zip: DEF (decompression bombs); refused from the header alone although alg, enc and key are supported. jose decrypts it to the plaintext repeated 4 times',
  });
}

// crit: jose writes a critical extension it is told it understands.
{
  const spec = { alg: 'A256KW' };
  const [key, exported] = await freshKey(spec);
  const kid = kidFor('crit');
  const jwk = { ...exported, kid, alg: 'A256KW', use: 'enc' };
  const token = await encrypt(
    PLAINTEXT,
    key,
    { alg: 'A256KW', enc: 'A256GCM', kid, crit: ['urn:example:ext'], 'urn:example:ext': true },
    undefined,
    { crit: { 'urn:example:ext': true } },
  );
  await checkDecrypts('crit', token, jwk, 'A256KW', PLAINTEXT, { crit: { 'urn:example:ext': true } });
  cases.push({
    name: 'refuse crit (A256KW/A256GCM)',
    alg: 'A256KW',
    enc: 'A256GCM',
    key: jwk,
    token,
    nested: false,
    expect: 'refuse',
    why: 'crit names an extension jwtd does not implement; jose decrypts it only when told it understands urn:example:ext',
  });
}

// Algorithms jose makes and jwtd does not decrypt with.
for (const [alg, enc, kty] of [
  ['A128GCMKW', 'A128GCM', 'oct'],
  ['RSA-OAEP-384', 'A256GCM', 'RSA'],
]) {
  const [key, exported] = await freshKey({ alg });
  const kid = kidFor(alg);
  const jwk = { ...exported, kid, use: 'enc' };
  const token = await encrypt(PLAINTEXT, key, { alg, enc, kid });
  await checkDecrypts(alg, token, jwk, alg, PLAINTEXT);
  cases.push({
    name: `refuse unsupported ${alg}`,
    alg,
    enc,
    key: jwk,
    token,
    nested: false,
    expect: 'refuse',
    why: `${alg} is not an algorithm jwtd decrypts with; the ${kty} key (no alg member) would otherwise load. jose decrypts it`,
  });
}

// ECDH-ES with an edited epk. Editing the header also changes the AAD, so
// the token fails any decryption; jwtd must refuse it at the epk, before
// any agreement is used.
function editHeader(token, edit) {
  const [h, ...rest] = token.split('.');
  const header = JSON.parse(dec8.decode(jose.base64url.decode(h)));
  edit(header);
  return [jose.base64url.encode(JSON.stringify(header)), ...rest].join('.');
}

// A P-256 epk against a P-384 recipient.
{
  const p384 = { alg: 'ECDH-ES', crv: 'P-384' };
  const [key, exported] = await freshKey(p384);
  const kid = kidFor('epk-other-curve');
  const jwk = { ...exported, kid, alg: 'ECDH-ES', use: 'enc' };
  const genuine = await encrypt(PLAINTEXT, key, { alg: 'ECDH-ES', enc: 'A256GCM', kid });
  await checkDecrypts('epk-other-curve', genuine, jwk, 'ECDH-ES', PLAINTEXT);
  const [otherKey] = await freshKey({ alg: 'ECDH-ES', crv: 'P-256' });
  const other = await encrypt(PLAINTEXT, otherKey, { alg: 'ECDH-ES', enc: 'A256GCM' });
  const p256Epk = jose.decodeProtectedHeader(other).epk;
  const token = editHeader(genuine, (h) => { h.epk = p256Epk; });
  const joseSays = await checkRefused('epk-other-curve', token, jwk, 'ECDH-ES');
  cases.push({
    name: 'refuse ECDH-ES epk on P-256 for a P-384 key',
    alg: 'ECDH-ES',
    enc: 'A256GCM',
    key: jwk,
    token,
    nested: false,
    expect: 'refuse',
    why: `a jose ECDH-ES token to a P-384 key whose header epk was replaced by a P-256 ephemeral key jose made (invalid-curve attack); jose refuses it too (${joseSays})`,
  });
}

// A point off the curve, with the recipient's crv: y of a genuine epk with
// its last bit flipped, for each curve and for ECDH-ES and ECDH-ES+A128KW.
for (const [alg, crv, enc] of [
  ['ECDH-ES', 'P-256', 'A128GCM'],
  ['ECDH-ES', 'P-384', 'A192CBC-HS384'],
  ['ECDH-ES', 'P-521', 'A256GCM'],
  ['ECDH-ES+A128KW', 'P-256', 'A128CBC-HS256'],
]) {
  const [key, exported] = await freshKey({ alg, crv });
  const kid = kidFor(`epk-off-curve-${crv}`);
  const jwk = { ...exported, kid, alg, use: 'enc' };
  const genuine = await encrypt(PLAINTEXT, key, { alg, enc, kid });
  await checkDecrypts(`epk-off-curve ${crv}`, genuine, jwk, alg, PLAINTEXT);
  const token = editHeader(genuine, (h) => {
    const y = jose.base64url.decode(h.epk.y);
    y[y.length - 1] ^= 1;
    h.epk.y = jose.base64url.encode(y);
  });
  const joseSays = await checkRefused(`epk-off-curve ${crv}`, token, jwk, alg);
  cases.push({
    name: `refuse ${alg} epk off ${crv}`,
    alg,
    enc,
    key: jwk,
    token,
    nested: false,
    expect: 'refuse',
    why: `a jose ${alg} token to a ${crv} key whose epk y had its last bit flipped: (x, y) is not a point of ${crv}; jose refuses it too (${joseSays})`,
  });
}

const today = new Date().toISOString().slice(0, 10);
const out = {
  provenance: `generated by tests/conformance/jwe/jose/generate.mjs with jose ${joseVersion}, node ${process.versions.node}, on ${today}`,
  plaintext: PLAINTEXT,
  claims: CLAIMS,
  cases,
};
writeFileSync(here('../jose.json'), JSON.stringify(out, null, 2) + '\n');
const count = (e) => cases.filter((c) => c.expect === e).length;
console.log(`wrote ${cases.length} cases (${count('decrypt')} decrypt, ${count('refuse')} refuse) to ../jose.json`);
