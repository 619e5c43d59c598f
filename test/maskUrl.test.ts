/**
 * Target URLs may carry secrets (issue 13, item 3): `maskUrl` keeps what locates the API and masks
 * userinfo secrets and secret-looking query values; the configuration's error messages, the store's
 * description and `HttpTarget.make`'s refusal show URLs masked.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Config from "../src/Config.js"
import { masked, maskUrl } from "../src/internal/maskUrl.js"
import * as Main from "../src/Main.js"
import * as HttpTarget from "../src/Targets/Http.js"

describe("maskUrl", () => {
  it("masks a password, a user standing alone, and secret-looking query values; keeps the rest", () => {
    assert.strictEqual(
      maskUrl("https://svc:pa%40ss@api.example.com:8443/hook?token=abc&x=1&api_key=zz&sig=q&apiKey=k#frag"),
      `https://svc:${masked}@api.example.com:8443/hook?token=${masked}&x=1&api_key=${masked}&sig=${masked}&apiKey=${masked}#frag`
    )
    assert.strictEqual(maskUrl("https://ghp_token123@api.github.com/x"), `https://${masked}@api.github.com/x`)
    assert.strictEqual(
      maskUrl("https://s3.example.com/b/o?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA&X-Amz-Date=20260101"),
      `https://s3.example.com/b/o?X-Amz-Signature=${masked}&X-Amz-Credential=${masked}&X-Amz-Date=20260101`
    )
    assert.strictEqual(
      maskUrl("http://[::1]:8080/a?access_token=t&client_secret=s&password=p&flag"),
      `http://[::1]:8080/a?access_token=${masked}&client_secret=${masked}&password=${masked}&flag`
    )
    assert.strictEqual(maskUrl("http://127.0.0.1:9000/plain?page=2"), "http://127.0.0.1:9000/plain?page=2")
    // What does not parse is not shown at all: it could be anything.
    assert.strictEqual(maskUrl("not a url with s3cret"), "(unparsable URL)")
    // Main's store description uses the same masking.
    assert.strictEqual(
      Main.maskUrl("postgres://fanout:s3cret@db/x?password=p"),
      `postgres://fanout:${masked}@db/x?password=${masked}`
    )
  })

  it.effect("a configuration error quotes a URL masked", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Config.decode("f.json", {
        targets: { a: { url: "ftp://user:hunter2@files.example.com/in?token=t0k3n" } },
        routes: { "x.*": ["a"] }
      }))
      const text = error.issues.map((i) => i.message).join("\n")
      assert.include(text, "Expected an http(s) URL")
      assert.notInclude(text, "hunter2")
      assert.notInclude(text, "t0k3n")
    }))

  it("HttpTarget.make refuses a bad URL without quoting it", () => {
    const thrown = Either.try(() => HttpTarget.make("a", { url: "http//hunter2@oops" }))
    assert.isTrue(Either.isLeft(thrown))
    if (Either.isLeft(thrown)) {
      assert.include(String(thrown.left), "a: expected an http(s) URL")
      assert.notInclude(String(thrown.left), "hunter2")
    }
  })
})
