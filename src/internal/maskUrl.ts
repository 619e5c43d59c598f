/**
 * Target URLs may carry secrets: userinfo (`https://user:password@host/`) and query tokens
 * (`?token=`, `?api_key=`, `?sig=`, `?X-Amz-Signature=`, …). {@link maskUrl} is what may be shown
 * of one in spans, logs, error messages and API answers.
 *
 * @since 0.1.0
 * @internal
 */

/** What stands in for a masked value. */
export const masked = "***"

/**
 * Query parameter names whose values are treated as secrets: any name containing one of these
 * words (case-insensitive; `-` and `_` ignored), e.g. `token`, `access_token`, `api_key`,
 * `apiKey`, `sig`, `signature`, `X-Amz-Signature`, `client_secret`, `password`, `auth`, `code`.
 */
const secretWords = ["token", "key", "sig", "secret", "pass", "pwd", "auth", "credential", "session", "code", "jwt"]

const isSecretName = (name: string): boolean => {
  const plain = name.toLowerCase().replace(/[-_]/g, "")
  return secretWords.some((word) => plain.includes(word))
}

/**
 * The URL with its userinfo secret (the password of `user:password@`, or a user standing alone, as
 * in `https://<token>@host/`) and the values of secret-looking query parameters replaced by `***`; scheme, host, port, path, the other parameters and the fragment are kept.
 * A string that does not parse as a URL is not shown at all (`(unparsable URL)`): it could be
 * anything, a secret included.
 *
 * @since 0.1.0
 * @internal
 */
export const maskUrl = (raw: string): string => {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return "(unparsable URL)"
  }
  // `user:password@`: the password is the secret. A user alone (`https://<token>@host/`) is often a token.
  if (url.password !== "") url.password = masked
  else if (url.username !== "") url.username = masked
  if (url.search !== "") {
    // Rebuilt by hand (not `searchParams.set`): the parameters keep their order and encoding.
    const parts = url.search.slice(1).split("&").map((part) => {
      const eq = part.indexOf("=")
      const name = eq === -1 ? part : part.slice(0, eq)
      let decoded = name
      try {
        decoded = decodeURIComponent(name.replace(/\+/g, " "))
      } catch {
        // a malformed escape: judge the name as written
      }
      return isSecretName(decoded) && eq !== -1 ? `${name}=${masked}` : part
    })
    url.search = `?${parts.join("&")}`
  }
  return url.toString()
}
