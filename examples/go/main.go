// The Go rewrite in runoff's example migration trial: the same API as ../node/server.js,
// answering byte-identical JSON for the same request (checked by tests/it/examples.rs). The
// standard library and gorilla/websocket (Debian's golang-github-gorilla-websocket-dev, through
// the replace in go.mod: nothing to download), and no Go 1.22 ServeMux patterns, so Debian's
// Go 1.19 builds it offline. The comments marked PARITY say where the two runtimes would
// naturally differ and how that is pinned down.
//
//	GET  /api/users?country=DE&min_age=30&max_age=40&sort=age&limit=50&offset=0
//	POST /api/orders   {"user_id":1,"items":[{"sku":"AB-1","qty":2,"unit_price_cents":1999}]}
//	GET  /api/report?rounds=N   CPU-heavy aggregate (runs on its own goroutine)
//	GET  /healthz
//	GET  /ws           WebSocket (RFC 6455, gorilla/websocket): echoes every message, same type
//
// PORT (default 3001) and HOST (default 127.0.0.1) choose the listen address.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// ---------------------------------------------------------------- the data set
// Generated, not loaded: xorshift32 with a fixed seed yields the same users in both apps.

const (
	userCount      = 5000
	seed           = 2463534242
	firstSignupDay = 17532 // 2018-01-01, in days since 1970-01-01
)

var (
	countries = []string{"BR", "CA", "DE", "ES", "FR", "GB", "IN", "JP", "NL", "US"}
	firstName = []string{"ada", "alan", "barbara", "dennis", "edsger", "frances", "grace", "guido",
		"james", "john", "ken", "linus", "margaret", "niklaus", "radia", "rob"}
	lastName = []string{"hamilton", "hopper", "kernighan", "knuth", "lamport", "liskov", "lovelace",
		"perlman", "pike", "ritchie", "thompson", "torvalds", "turing", "wirth"}
)

// User is one record; the field order is the JSON key order (PARITY: JS keeps insertion order).
type User struct {
	ID       int    `json:"id"`
	Name     string `json:"name"`
	Email    string `json:"email"`
	Country  string `json:"country"`
	Age      int    `json:"age"`
	Score    int    `json:"score"`
	SignedUp string `json:"signed_up"`
}

func makeUsers() []User {
	s := uint32(seed)
	next := func() uint32 {
		s ^= s << 13
		s ^= s >> 17
		s ^= s << 5
		return s
	}
	users := make([]User, 0, userCount)
	for id := 1; id <= userCount; id++ {
		first := firstName[next()%uint32(len(firstName))]
		last := lastName[next()%uint32(len(lastName))]
		day := firstSignupDay + int64(next()%2190)
		users = append(users, User{
			ID:       id,
			Name:     first + " " + last,
			Email:    fmt.Sprintf("%s.%s%d@example.com", first, last, id),
			Country:  countries[next()%uint32(len(countries))],
			Age:      18 + int(next()%63),
			Score:    int(next() % 100001),
			SignedUp: time.Unix(day*86400, 0).UTC().Format("2006-01-02"),
		})
	}
	return users
}

var users = makeUsers()

// ---------------------------------------------------------------- helpers

type apiError struct {
	status  int
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(msg string) error { return &apiError{http.StatusBadRequest, msg} }

type errorBody struct {
	Error string `json:"error"`
}

// writeJSON answers like Express's res.json. PARITY: the same Content-Type; no HTML escaping
// of <, > and & (Go's default, not JSON.stringify's); no trailing newline (Encoder.Encode adds
// one); an explicit Content-Length, as Express sends, HEAD included.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v interface{}) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		log.Printf("encoding a response: %v", err)
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"internal error"}` + "\n")
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var api *apiError
	if errors.As(err, &api) {
		writeJSON(w, r, api.status, errorBody{api.message})
		return
	}
	log.Printf("%s %s: %v", r.Method, r.URL, err)
	writeJSON(w, r, http.StatusInternalServerError, errorBody{"internal error"})
}

// query parses the raw query like the Node app: any malformed pair is a 400 (Go's Query()
// would silently drop it), and the first value of a repeated key wins.
func query(r *http.Request) (url.Values, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("invalid query string")
	}
	return v, nil
}

var digits = regexp.MustCompile(`^[0-9]{1,9}$`)

// intParam is an integer query parameter in [min, max], or dflt when absent.
func intParam(q url.Values, name string, min, max, dflt int) (int, error) {
	if _, ok := q[name]; !ok {
		return dflt, nil
	}
	raw := q.Get(name)
	bad := badRequest(fmt.Sprintf("%s must be an integer from %d to %d", name, min, max))
	if !digits.MatchString(raw) {
		return 0, bad
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < min || n > max {
		return 0, bad
	}
	return n, nil
}

// divRound rounds n/d half up, for n >= 0, d > 0.
func divRound(n, d int64) int64 { return (n + d/2) / d }

// mean2 is a mean with two decimals. PARITY: computed in integer hundredths, then one division
// by 100, which is the same IEEE double in both runtimes and prints the same shortest digits.
func mean2(sum, count int64) float64 { return float64(divRound(sum*100, count)) / 100 }

// percentile is the nearest-rank percentile of a sorted slice.
func percentile(sorted []int, p int) int {
	rank := (p*len(sorted) + 99) / 100
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// ---------------------------------------------------------------- /api/users

type userList struct {
	Total int    `json:"total"`
	Items []User `json:"items"`
}

var (
	twoLetters = regexp.MustCompile(`^[A-Za-z]{2}$`)
	sorts      = map[string]func(a, b *User) bool{
		"age":    func(a, b *User) bool { return a.Age < b.Age || (a.Age == b.Age && a.ID < b.ID) },
		"-age":   func(a, b *User) bool { return a.Age > b.Age || (a.Age == b.Age && a.ID < b.ID) },
		"score":  func(a, b *User) bool { return a.Score < b.Score || (a.Score == b.Score && a.ID < b.ID) },
		"-score": func(a, b *User) bool { return a.Score > b.Score || (a.Score == b.Score && a.ID < b.ID) },
	}
)

func listUsers(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	country := ""
	if _, ok := q["country"]; ok {
		c := q.Get("country")
		if !twoLetters.MatchString(c) {
			return badRequest("country must be a 2-letter code")
		}
		country = strings.ToUpper(c)
	}
	minAge, err := intParam(q, "min_age", 0, 150, 0)
	if err != nil {
		return err
	}
	maxAge, err := intParam(q, "max_age", 0, 150, 150)
	if err != nil {
		return err
	}
	limit, err := intParam(q, "limit", 1, 500, 50)
	if err != nil {
		return err
	}
	offset, err := intParam(q, "offset", 0, 1000000, 0)
	if err != nil {
		return err
	}
	order := "id"
	if _, ok := q["sort"]; ok {
		order = q.Get("sort")
	}
	less, known := sorts[order]
	if !known && order != "id" {
		return badRequest("sort must be one of id, age, -age, score, -score")
	}
	// PARITY: never a nil slice, which Go encodes as null where JS has [].
	matched := make([]User, 0, len(users))
	for i := range users {
		u := &users[i]
		if (country == "" || u.Country == country) && u.Age >= minAge && u.Age <= maxAge {
			matched = append(matched, *u)
		}
	}
	if known {
		sort.Slice(matched, func(i, j int) bool { return less(&matched[i], &matched[j]) })
	}
	// PARITY: Array.prototype.slice clamps; a Go slice expression panics instead.
	lo, hi := offset, offset+limit
	if lo > len(matched) {
		lo = len(matched)
	}
	if hi > len(matched) {
		hi = len(matched)
	}
	writeJSON(w, r, http.StatusOK, userList{Total: len(matched), Items: matched[lo:hi]})
	return nil
}

// ---------------------------------------------------------------- /api/orders

const (
	taxRateBP    = 825 // 8.25 %, in basis points
	maxItems     = 100
	maxBodyBytes = 65536
)

var skuPattern = regexp.MustCompile(`^[A-Z0-9-]{1,32}$`)

type orderLine struct {
	SKU            string `json:"sku"`
	Qty            int64  `json:"qty"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	LineTotalCents int64  `json:"line_total_cents"`
}

type order struct {
	OrderID       string      `json:"order_id"`
	UserID        int64       `json:"user_id"`
	Country       string      `json:"country"`
	Items         []orderLine `json:"items"`
	ItemCount     int64       `json:"item_count"`
	SubtotalCents int64       `json:"subtotal_cents"`
	TaxRateBP     int64       `json:"tax_rate_bp"`
	TaxCents      int64       `json:"tax_cents"`
	TotalCents    int64       `json:"total_cents"`
	Currency      string      `json:"currency"`
}

// integer is v as a whole number when v is a JSON number with no fractional part. PARITY: JS
// parses every number to a double first, so 1.0 and 1e0 are the integer 1 there, 2^60 is an
// integer too, and 1e400 is Infinity, not an error: json.Number and ParseFloat reproduce that.
func integer(v interface{}) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	if math.IsInf(f, 0) || f != math.Trunc(f) {
		return 0, false
	}
	return f, true
}

func inRange(v interface{}, min, max float64) (int64, bool) {
	f, ok := integer(v)
	if !ok || f < min || f > max {
		return 0, false
	}
	return int64(f), true
}

// decodeJSON parses a whole body like JSON.parse: one value, nothing but whitespace after it.
func decodeJSON(b []byte) (interface{}, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v interface{}
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return v, true
}

func readBody(r *http.Request, w http.ResponseWriter) ([]byte, error) {
	// PARITY with body-parser (inflate: false): a request that has a body and a
	// Content-Encoding other than identity is refused before it is read.
	hasBody := len(r.TransferEncoding) > 0 || r.Header.Get("Content-Length") != "" || r.ContentLength > 0
	enc := strings.ToLower(r.Header.Get("Content-Encoding"))
	if hasBody && enc != "" && enc != "identity" {
		return nil, &apiError{http.StatusUnsupportedMediaType, "unsupported content encoding"}
	}
	if r.ContentLength > maxBodyBytes {
		return nil, &apiError{http.StatusRequestEntityTooLarge, "body too large"}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, &apiError{http.StatusRequestEntityTooLarge, "body too large"}
	}
	return b, err
}

func createOrder(w http.ResponseWriter, r *http.Request) error {
	raw, err := readBody(r, w)
	if err != nil {
		return err
	}
	parsed, ok := decodeJSON(raw)
	if !ok {
		return badRequest("invalid JSON body")
	}
	body, ok := parsed.(map[string]interface{})
	if !ok {
		return badRequest("body must be a JSON object")
	}
	id, ok := integer(body["user_id"])
	if !ok || id < 1 {
		return badRequest("user_id must be a positive integer")
	}
	if id > float64(len(users)) {
		return &apiError{http.StatusUnprocessableEntity, "user_id: no such user"}
	}
	userID := int64(id)
	items, ok := body["items"].([]interface{})
	if !ok || len(items) == 0 {
		return badRequest("items must be a non-empty array")
	}
	if len(items) > maxItems {
		return badRequest(fmt.Sprintf("items: at most %d allowed", maxItems))
	}
	out := order{
		UserID:    userID,
		Country:   users[userID-1].Country,
		Items:     make([]orderLine, 0, len(items)),
		TaxRateBP: taxRateBP,
		Currency:  "EUR",
	}
	canonical := strconv.FormatInt(userID, 10)
	for i, it := range items {
		item, ok := it.(map[string]interface{})
		if !ok {
			return badRequest(fmt.Sprintf("items[%d] must be an object", i))
		}
		sku, ok := item["sku"].(string)
		if !ok || !skuPattern.MatchString(sku) {
			return badRequest(fmt.Sprintf("items[%d].sku must be 1 to 32 characters of A-Z, 0-9 and -", i))
		}
		qty, ok := inRange(item["qty"], 1, 1000)
		if !ok {
			return badRequest(fmt.Sprintf("items[%d].qty must be an integer from 1 to 1000", i))
		}
		price, ok := inRange(item["unit_price_cents"], 0, 10000000)
		if !ok {
			return badRequest(fmt.Sprintf("items[%d].unit_price_cents must be an integer from 0 to 10000000", i))
		}
		line := qty * price
		out.SubtotalCents += line
		out.ItemCount += qty
		canonical += fmt.Sprintf("|%s*%d@%d", sku, qty, price)
		out.Items = append(out.Items, orderLine{sku, qty, price, line})
	}
	out.TaxCents = divRound(out.SubtotalCents*taxRateBP, 10000)
	out.TotalCents = out.SubtotalCents + out.TaxCents
	// Deterministic, so that both backends agree; a real service would mint a random id here,
	// which is exactly the kind of field a response comparison has to be told to ignore.
	h := fnv.New32a()
	_, _ = h.Write([]byte(canonical))
	out.OrderID = fmt.Sprintf("ord-%08x", h.Sum32())
	writeJSON(w, r, http.StatusCreated, out)
	return nil
}

// ---------------------------------------------------------------- /api/report

const defaultRounds = 20

type countryStats struct {
	Country  string  `json:"country"`
	Users    int64   `json:"users"`
	AvgAge   float64 `json:"avg_age"`
	AvgScore float64 `json:"avg_score"`
}

type distribution struct {
	Min  int     `json:"min"`
	Max  int     `json:"max"`
	Mean float64 `json:"mean"`
	P50  int     `json:"p50"`
	P90  int     `json:"p90"`
	P99  int     `json:"p99"`
}

type leader struct {
	ID    int    `json:"id"`
	Name  string `json:"name"`
	Score int    `json:"score"`
}

type report struct {
	Rounds    int            `json:"rounds"`
	Users     int            `json:"users"`
	Countries []countryStats `json:"countries"`
	Age       distribution   `json:"age"`
	Score     distribution   `json:"score"`
	Top       []leader       `json:"top"`
}

func stats(sorted []int, sum int64) distribution {
	return distribution{
		Min:  sorted[0],
		Max:  sorted[len(sorted)-1],
		Mean: mean2(sum, int64(len(sorted))),
		P50:  percentile(sorted, 50),
		P90:  percentile(sorted, 90),
		P99:  percentile(sorted, 99),
	}
}

// reportOnce is one pass: per-country aggregates, age and score percentiles by sorting, and a
// leaderboard by sorting every user. O(n log n); `rounds` repeats it to make it heavier.
func reportOnce() report {
	index := make(map[string]int, len(countries))
	for i, c := range countries {
		index[c] = i
	}
	type acc struct{ users, ageSum, scoreSum int64 }
	byCountry := make([]acc, len(countries))
	ages := make([]int, len(users))
	scores := make([]int, len(users))
	var ageSum, scoreSum int64
	for i := range users {
		u := &users[i]
		c := &byCountry[index[u.Country]]
		c.users++
		c.ageSum += int64(u.Age)
		c.scoreSum += int64(u.Score)
		ages[i] = u.Age
		scores[i] = u.Score
		ageSum += int64(u.Age)
		scoreSum += int64(u.Score)
	}
	sort.Ints(ages)
	sort.Ints(scores)
	ranked := append([]User(nil), users...)
	sort.Slice(ranked, func(i, j int) bool {
		a, b := &ranked[i], &ranked[j]
		return a.Score > b.Score || (a.Score == b.Score && a.ID < b.ID)
	})
	out := report{
		Users:     len(users),
		Countries: make([]countryStats, 0, len(countries)),
		Age:       stats(ages, ageSum),
		Score:     stats(scores, scoreSum),
		Top:       make([]leader, 0, 10),
	}
	for i, c := range countries {
		a := byCountry[i]
		out.Countries = append(out.Countries, countryStats{c, a.users, mean2(a.ageSum, a.users), mean2(a.scoreSum, a.users)})
	}
	for _, u := range ranked[:10] {
		out.Top = append(out.Top, leader{u.ID, u.Name, u.Score})
	}
	return out
}

func reportHandler(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	rounds, err := intParam(q, "rounds", 1, 1000, defaultRounds)
	if err != nil {
		return err
	}
	var out report
	for i := 0; i < rounds; i++ {
		out = reportOnce()
	}
	out.Rounds = rounds
	writeJSON(w, r, http.StatusOK, out)
	return nil
}

// ---------------------------------------------------------------- /ws

// maxMessageBytes bounds a whole message (fragments included), like ws's maxPayload.
const maxMessageBytes = 64 << 20

var wsKey = regexp.MustCompile(`^[+/0-9A-Za-z]{22}==$`) // base64 of 16 bytes, as RFC 6455 asks

func hasToken(values []string, token string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.Trim(t, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// isWebSocketUpgrade is true for a request that asks for a WebSocket: GET, `Connection:
// upgrade` (a token of the list) and `Upgrade: websocket` (exactly, in any case: what ws
// accepts, where gorilla's IsWebSocketUpgrade takes a token list).
func isWebSocketUpgrade(r *http.Request) bool {
	upgrade := r.Header.Values("Upgrade")
	return r.Method == http.MethodGet && hasToken(r.Header.Values("Connection"), "upgrade") &&
		len(upgrade) == 1 && strings.EqualFold(upgrade[0], "websocket")
}

// wsRefusal says why GET /ws cannot become a WebSocket, as an error to answer in JSON, and
// adds the headers that go with it to h; nil if it can. PARITY: ws and gorilla/websocket each
// refuse a bad handshake in their own words, in plain text, and disagree on what is bad (ws
// also takes version 8; gorilla takes any non-empty key and a token list in Upgrade). Both
// apps check the handshake themselves first, alike, so neither library ever refuses one.
func wsRefusal(r *http.Request, h http.Header) error {
	if !isWebSocketUpgrade(r) {
		h.Set("Upgrade", "websocket")
		return &apiError{http.StatusUpgradeRequired, "websocket upgrade required"}
	}
	// PARITY: Node joins repeated headers with ", ", which then fails the check; so does a
	// repeated header here.
	if v := r.Header.Values("Sec-WebSocket-Version"); len(v) != 1 || v[0] != "13" {
		h.Set("Sec-WebSocket-Version", "13")
		return badRequest("Sec-WebSocket-Version must be 13")
	}
	if v := r.Header.Values("Sec-WebSocket-Key"); len(v) != 1 || !wsKey.MatchString(v[0]) {
		return badRequest("Sec-WebSocket-Key must be 16 bytes in base64")
	}
	return nil
}

// PARITY: no permessage-deflate (EnableCompression is off; ws's perMessageDeflate too) and no
// subprotocol (no Subprotocols: Sec-WebSocket-Protocol is ignored, as the Node app makes ws
// do). Any origin: this is a test backend behind a proxy.
var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	CheckOrigin:     func(*http.Request) bool { return true },
	// Not reached after wsRefusal; in JSON all the same if it were.
	Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
		log.Printf("%s %s: %v", r.Method, r.URL, reason)
		writeJSON(w, r, status, errorBody{"invalid websocket handshake"})
	},
}

func wsHandler(w http.ResponseWriter, r *http.Request) error {
	if err := wsRefusal(r, w.Header()); err != nil {
		return err
	}
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil // answered by upgrader.Error, or the connection is gone
	}
	echo(conn)
	return nil
}

// echo sends every message back, whole and of the same type, until the connection closes.
// gorilla answers a ping with a pong of the same payload by itself.
func echo(conn *websocket.Conn) {
	defer linger(conn)
	conn.SetReadLimit(maxMessageBytes)
	closeWith := func(code int, text string) {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text),
			time.Now().Add(5*time.Second))
	}
	// PARITY: ws answers a close frame with the same code and reason; gorilla's default
	// handler sends the code only. (A close frame without a code is answered without one.)
	conn.SetCloseHandler(func(code int, text string) error {
		closeWith(code, text)
		return nil
	})
	for {
		kind, msg, err := conn.ReadMessage()
		if err != nil {
			return // a close frame, answered; or a protocol error, answered by gorilla
		}
		// PARITY: ws closes with 1007 (and no reason) on a text message that is not UTF-8;
		// gorilla does not look.
		if kind == websocket.TextMessage && !utf8.Valid(msg) {
			closeWith(websocket.CloseInvalidFramePayloadData, "")
			return
		}
		// WriteMessage sends one frame, as ws does (a NextWriter would split it into frames
		// of WriteBufferSize).
		if err := conn.WriteMessage(kind, msg); err != nil {
			return
		}
	}
}

// linger ends a connection after the close frame as ws does: it stops sending (FIN), then
// reads and drops whatever the peer still sends until the peer closes too, for at most 30 s
// (ws's closeTimeout). PARITY: closing at once, with unread bytes (the rest of a message
// over the limit, say), would make the kernel answer with a RST, and the peer could lose the
// close frame.
func linger(conn *websocket.Conn) {
	defer conn.Close()
	nc := conn.UnderlyingConn()
	if tcp, ok := nc.(*net.TCPConn); ok {
		_ = tcp.CloseWrite()
	}
	_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, _ = io.Copy(io.Discard, nc)
}

// ---------------------------------------------------------------- routing

type handler func(http.ResponseWriter, *http.Request) error

// route picks a handler by method and path, by hand (Go 1.19 has no method patterns).
// PARITY: Express routes on the raw path, so `/api/%75sers` is not `/api/users` there;
// r.URL.Path is decoded, EscapedPath is not. Routing is exact: no case folding, no trailing
// slash, GET routes answer HEAD, everything else (OPTIONS included) is 404.
func route(r *http.Request) handler {
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch path := r.URL.EscapedPath(); {
	case path == "/healthz" && get:
		return func(w http.ResponseWriter, r *http.Request) error {
			writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
			return nil
		}
	case path == "/api/users" && get:
		return listUsers
	case path == "/api/report" && get:
		return reportHandler
	case path == "/api/orders" && r.Method == http.MethodPost:
		return createOrder
	case path == "/ws" && get:
		return wsHandler
	}
	return nil
}

func serve(w http.ResponseWriter, r *http.Request) {
	h := route(r)
	if h == nil {
		writeJSON(w, r, http.StatusNotFound, errorBody{"not found"})
		return
	}
	if err := h(w, r); err != nil {
		writeError(w, r, err)
	}
}

func main() {
	host := os.Getenv("HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "3001"
	}
	srv := &http.Server{
		Addr:              net.JoinHostPort(host, port),
		Handler:           http.HandlerFunc(serve),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("go example listening on http://%s", srv.Addr)

	done := make(chan struct{})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		close(done)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-done
}
