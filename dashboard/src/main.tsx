import "uplot/dist/uPlot.min.css"
import "./style.css"
import { render } from "preact"
import { useEffect, useState } from "preact/hooks"
import * as Api from "./api.js"
import { DeadLetters } from "./DeadLetters.js"
import { EventDetail } from "./EventDetail.js"
import { Events } from "./Events.js"
import { Overview } from "./Overview.js"

type Auth = "checking" | "signin" | "ready"

/** The page from the location's hash: `#/`, `#/events?…`, `#/events/<id>`, `#/dead-letters`. */
const useRoute = (): string => {
  const [hash, setHash] = useState(location.hash)
  useEffect(() => {
    const listener = () => setHash(location.hash)
    addEventListener("hashchange", listener)
    return () => removeEventListener("hashchange", listener)
  }, [])
  return hash.replace(/^#/, "") || "/"
}

const SignIn = (props: { readonly onSignedIn: () => void; readonly message: string | undefined }) => {
  const [key, setKey] = useState("")
  const [error, setError] = useState<string | undefined>(props.message)
  const [busy, setBusy] = useState(false)
  const submit = async (e: Event) => {
    e.preventDefault()
    setBusy(true)
    Api.setKey(key)
    try {
      await Api.request<Api.TargetsView>(Api.livePath)
      props.onSignedIn()
    } catch (err) {
      Api.setKey(undefined)
      setError(
        err instanceof Api.ApiError && err.status === 401
          ? "That key was not accepted."
          : err instanceof Api.ApiError && err.status === 429
          ? "Too many failed attempts from this address; wait and try again."
          : `Could not sign in: ${String((err as Error).message)}`
      )
    } finally {
      setBusy(false)
    }
  }
  return (
    <main class="signin">
      <h1>Fanout</h1>
      <form onSubmit={submit} aria-describedby="signin-help">
        <h2>Sign in</h2>
        <p id="signin-help">
          This server needs an API key. It is kept in this tab's memory only and sent with each request; reloading the
          page forgets it.
        </p>
        <label for="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          autocomplete="off"
          required
          value={key}
          onInput={(e) => setKey((e.target as HTMLInputElement).value)}
        />
        <button type="submit" disabled={busy}>Sign in</button>
        {error !== undefined && <p role="alert" class="error">{error}</p>}
      </form>
    </main>
  )
}

const links = [
  ["/", "Overview"],
  ["/events", "Events"],
  ["/dead-letters", "Dead letters"]
] as const

const App = () => {
  const [auth, setAuth] = useState<Auth>("checking")
  const [message, setMessage] = useState<string | undefined>(undefined)
  const route = useRoute()

  useEffect(() => {
    // Open server (no keys) or not: ask the API itself.
    Api.request<Api.TargetsView>(Api.livePath).then(
      () => setAuth("ready"),
      (err) => {
        setAuth("signin")
        if (!(err instanceof Api.ApiError && err.status === 401)) setMessage(`The server did not answer: ${String(err.message)}`)
      }
    )
    return Api.onUnauthorized(() => {
      Api.setKey(undefined)
      setMessage(Api.hasKey() ? "Your key stopped working; sign in again." : undefined)
      setAuth("signin")
    })
  }, [])

  if (auth === "checking") return <main aria-busy="true"><p>Loading…</p></main>
  if (auth === "signin") return <SignIn onSignedIn={() => setAuth("ready")} message={message} />

  const [path, search = ""] = route.split("?")
  const section = path === "/" ? "/" : `/${path!.split("/")[1]}`
  const page = path === "/"
    ? <Overview />
    : path === "/events"
    ? <Events search={search} />
    : path!.startsWith("/events/")
    ? <EventDetail id={decodeURIComponent(path!.slice("/events/".length))} />
    : path === "/dead-letters"
    ? <DeadLetters />
    : <p>No such page. <a href="#/">Overview</a></p>
  return (
    <>
      <header class="top">
        <span class="brand">Fanout</span>
        <nav aria-label="Dashboard">
          <ul>
            {links.map(([href, label]) => (
              <li key={href}>
                <a href={`#${href}`} aria-current={section === href ? "page" : undefined}>{label}</a>
              </li>
            ))}
          </ul>
        </nav>
        {Api.hasKey() && (
          <button
            type="button"
            class="secondary"
            onClick={() => {
              Api.setKey(undefined)
              setMessage(undefined)
              setAuth("signin")
            }}
          >
            Sign out
          </button>
        )}
      </header>
      <main id="main">{page}</main>
    </>
  )
}

render(<App />, document.getElementById("app")!)
