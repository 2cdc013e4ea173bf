// What both generators share (generate.mjs: ../jose.json for the core;
// daemon.mjs: ../jose-daemon.json for the daemon): the jose version check,
// the algorithm table, fresh keys, encryption and jose's own round trip.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as jose from 'jose';

export const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const lock = JSON.parse(readFileSync(here('./package-lock.json'), 'utf8'));
export const joseVersion = lock.packages['node_modules/jose'].version;
const installed = JSON.parse(readFileSync(here('./node_modules/jose/package.json'), 'utf8')).version;
if (installed !== joseVersion) {
  throw new Error(`jose ${installed} installed, ${joseVersion} locked: run npm ci`);
}

export const PLAINTEXT = 'Cross-library JWE vector \u2013 jose \u2194 jwtd: the quick brown fox jumps over the lazy dog.';
export const CLAIMS = { sub: 'alice', iss: 'https://issuer.example', exp: 4102444800 };
export const enc8 = new TextEncoder();
export const dec8 = new TextDecoder();

export const ALGS = [
  { alg: 'RSA-OAEP' },
  { alg: 'RSA-OAEP-256' },
  { alg: 'ECDH-ES', crv: 'P-256' },
  { alg: 'ECDH-ES', crv: 'P-384', party: true },
  { alg: 'ECDH-ES', crv: 'P-521' },
  { alg: 'ECDH-ES+A128KW', crv: 'P-256' },
  { alg: 'ECDH-ES+A192KW', crv: 'P-256', party: true },
  { alg: 'ECDH-ES+A256KW', crv: 'P-256' },
  { alg: 'A128KW' },
  { alg: 'A192KW' },
  { alg: 'A256KW' },
  { alg: 'dir' },
];
export const ENCS = ['A128GCM', 'A192GCM', 'A256GCM', 'A128CBC-HS256', 'A192CBC-HS384', 'A256CBC-HS512'];

let serial = 0;
export const kidFor = (label) => `jose-${String(++serial).padStart(3, '0')}-${label}`;
export const label = ({ alg, crv }, enc) => [alg, crv, enc].filter(Boolean).join('/');

// A fresh key for `alg` (and `enc`, for dir): [what jose encrypts with,
// the private JWK jose exports].
export async function freshKey({ alg, crv }, enc) {
  if (alg.startsWith('RSA-OAEP')) {
    const { publicKey, privateKey } = await jose.generateKeyPair(alg, { modulusLength: 2048, extractable: true });
    return [publicKey, await jose.exportJWK(privateKey)];
  }
  if (alg.startsWith('ECDH-ES')) {
    const { publicKey, privateKey } = await jose.generateKeyPair(alg, { crv, extractable: true });
    return [publicKey, await jose.exportJWK(privateKey)];
  }
  // oct: AES-KW of the alg's size; dir: a key of the enc's length.
  const secret = await jose.generateSecret(alg === 'dir' ? enc : alg, { extractable: true });
  return [secret, await jose.exportJWK(secret)];
}

export async function importPrivate(jwk, alg) {
  if (jwk.kty === 'oct') return jose.base64url.decode(jwk.k);
  const { kid, use, alg: _, ...bare } = jwk;
  return jose.importJWK(bare, alg);
}

export async function encrypt(plaintext, key, header, params, options) {
  const jwe = new jose.CompactEncrypt(enc8.encode(plaintext)).setProtectedHeader(header);
  if (params) jwe.setKeyManagementParameters(params);
  return jwe.encrypt(key, options);
}

export function partyInfo(spec) {
  return spec.party
    ? { apu: enc8.encode('Alice (jose)'), apv: enc8.encode('Bob (jwtd)') }
    : undefined;
}

// jose decrypts `token` with `jwk` to `want` (bytes as UTF-8), else throws.
export async function checkDecrypts(name, token, jwk, alg, want, options) {
  const key = await importPrivate(jwk, alg);
  const { plaintext } = await jose.compactDecrypt(token, key, options);
  if (dec8.decode(plaintext) !== want) throw new Error(`${name}: jose round trip differs`);
}

export async function checkRefused(name, token, jwk, alg) {
  const key = await importPrivate(jwk, alg);
  try {
    await jose.compactDecrypt(token, key);
  } catch (err) {
    return err.code ?? err.name;
  }
  throw new Error(`${name}: jose decrypts the edited token`);
}

