// How hard a password is to guess, roughly: its length and the kinds of
// characters in it, with common patterns counted down. Shown while typing;
// the server's rule is only the length (tenants/src/password.rs).
import { PASSWORD_MIN } from "../validate";

export type Strength = "too_short" | "weak" | "fair" | "strong";

const COMMON = /(password|motdepasse|azerty|qwerty|123456|abcdef|letmein|welcome|bonjour)/i;

/** Bits of guessing, estimated from length and character classes. */
export function entropyBits(password: string): number {
  let pool = 0;
  if (/[a-z]/.test(password)) pool += 26;
  if (/[A-Z]/.test(password)) pool += 26;
  if (/[0-9]/.test(password)) pool += 10;
  if (/[^a-zA-Z0-9]/.test(password)) pool += 33;
  const distinct = new Set(password).size;
  // Repeated characters add little: count length as the distinct ones plus a third of the rest.
  const effective = distinct + (password.length - distinct) / 3;
  let bits = effective * Math.log2(Math.max(pool, 1));
  if (COMMON.test(password)) bits -= 20;
  return Math.max(0, bits);
}

export function strength(password: string): Strength {
  if ([...password].length < PASSWORD_MIN) return "too_short";
  const bits = entropyBits(password);
  if (bits < 45) return "weak";
  if (bits < 70) return "fair";
  return "strong";
}
