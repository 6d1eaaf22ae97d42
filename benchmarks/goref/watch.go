package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	v2 "go.etcd.io/etcd/client"
	"go.etcd.io/etcd/clientv3"
)

// watchFlags are the flags both watchers take: where to watch and when to stop.
type watchFlags struct {
	endpoints, prefix *string
	duration, idle    *float64
	untilStdin        *bool
}

// newWatchFlags defines them on fs; `position` names what stdin gives: "revision" (v3) or "index" (v2).
func newWatchFlags(fs *flag.FlagSet, prefixHelp, position string) watchFlags {
	return watchFlags{
		endpoints:  fs.String("endpoints", "http://127.0.0.1:2379", "comma-separated client URLs"),
		prefix:     fs.String("prefix", "/registry/pods/", prefixHelp),
		duration:   fs.Float64("duration", 10, "stop after this many seconds"),
		untilStdin: fs.Bool("until-stdin", false, "also stop once the "+position+" read from stdin was seen (or -idle passes)"),
		idle:       fs.Float64("idle", 3, "with -until-stdin: seconds without events that end the watch"),
	}
}

// stopper starts reading stdin when -until-stdin asks for it.
func (w watchFlags) stopper() *stopper {
	s := &stopper{}
	if *w.untilStdin {
		s.readStdin()
	}
	return s
}

// over: the watch ends now (past its -duration deadline, or done by -until-stdin).
func (w watchFlags) over(deadline int64, stop *stopper) bool {
	return monoNow() >= deadline || (*w.untilStdin && stop.done(time.Duration(*w.idle*1e9)))
}

// stampTimes measures a watch as etcdbench does, from the stamps `put -value-file` writes: latency
// from each write's intended send time, for writes intended in the measured window, and the events
// received while that window was open. The window opens -warmup seconds after write 0's intended
// time (the earliest stamp seen) and lasts -window seconds.
type stampTimes struct {
	at               int   // offset of the stamp in every value
	warmup, window   int64 // ns
	intended, recvAt []int64
}

// newStampTimes is nil without -value-file: the values carry no stamp to measure from.
func newStampTimes(valueFile string, warmup, window float64) *stampTimes {
	if valueFile == "" {
		return nil
	}
	b, err := os.ReadFile(valueFile)
	if err != nil {
		fatal("-value-file: %v", err)
	}
	at := indexOf(b, placeholder)
	if at < 0 {
		fatal("-value-file: %s holds no stamp placeholder", valueFile)
	}
	if window <= 0 {
		fatal("-value-file needs -window > 0")
	}
	return &stampTimes{at: at, warmup: int64(warmup * 1e9), window: int64(window * 1e9)}
}

// add records one event's value, received at `now`; the stamp is WWWW:SSSSSSSSSSSS:<20-digit ns>.
func (s *stampTimes) add(value []byte, now int64) {
	if len(value) < s.at+38 {
		fatal("watch: a %d-byte value holds no stamp at offset %d", len(value), s.at)
	}
	ns, err := strconv.ParseInt(string(value[s.at+18:s.at+38]), 10, 64)
	if err != nil {
		fatal("watch: unreadable stamp %q", value[s.at:s.at+38])
	}
	s.intended = append(s.intended, ns)
	s.recvAt = append(s.recvAt, now)
}

// addTo writes the window's figures: events received in it, their rate, and the latency percentiles
// (µs) of the writes intended in it.
func (s *stampTimes) addTo(out map[string]interface{}) {
	if len(s.intended) == 0 {
		return
	}
	t0 := s.intended[0]
	for _, t := range s.intended {
		if t < t0 {
			t0 = t
		}
	}
	open, closed := t0+s.warmup, t0+s.warmup+s.window
	var received int64
	lat := make([]int64, 0, len(s.intended))
	for i, t := range s.intended {
		if r := s.recvAt[i]; r >= open && r < closed {
			received++
		}
		if t >= open && t < closed {
			lat = append(lat, s.recvAt[i]-t)
		}
	}
	out["window_events"] = received
	out["window_events_per_s"] = round3(float64(received) * 1e9 / float64(s.window))
	out["window_writes"] = len(lat)
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) int64 { return lat[int(p*float64(len(lat)-1)+0.5)] / 1000 }
	out["latency_us"] = map[string]int64{"p50": pct(0.5), "p99": pct(0.99), "max": lat[len(lat)-1] / 1000}
}

// runWatch: one v3 watch on -prefix with prev_kv and progress_notify, counting events. The Go
// watcher does not decode the Kubernetes object (Debian ships no k8s.io/api for it): its figures are
// the client's transport and gRPC decode cost only, a lower bound for a watcher that decodes.
func runWatch(args []string) {
	fs := flag.NewFlagSet("watch", flag.ExitOnError)
	w := newWatchFlags(fs, "key prefix", "revision")
	startRev := fs.Int64("start-rev", 0, "first revision to watch (0: current + 1)")
	valueFile := fs.String("value-file", "", "the writer's -value-file: measure latency from its stamps")
	warmup := fs.Float64("warmup", 2, "with -value-file: seconds from write 0's intended time to the window")
	window := fs.Float64("window", 0, "with -value-file: the measured window's length in seconds")
	tlsCfg := tlsFlags(fs, "over TLS")
	decodeJSON := fs.Bool("decode-json", false, "decode each event's value and previous value as JSON "+
		"(encoding/json into map[string]interface{}: Go's generic decode, no k8s.io/api types)")
	fs.Parse(args)
	endpoints, prefix := w.endpoints, w.prefix
	stamps := newStampTimes(*valueFile, *warmup, *window)
	var decodeErrors int64
	decode := func(b []byte) {
		var obj map[string]interface{}
		if json.Unmarshal(b, &obj) != nil {
			decodeErrors++
		}
	}

	cli, err := clientv3.New(clientv3.Config{
		Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second,
		MaxCallRecvMsgSize: 256 << 20, TLS: tlsCfg(),
	})
	if err != nil {
		fatal("watch: connect %s: %v", *endpoints, err)
	}
	defer cli.Close()
	rev := *startRev
	if rev == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := cli.Get(ctx, "\x00", clientv3.WithCountOnly())
		cancel()
		if err != nil {
			fatal("watch: %v", err)
		}
		rev = resp.Header.Revision + 1
	}
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	defer cancel()
	wch := cli.Watch(ctx, *prefix, clientv3.WithPrefix(), clientv3.WithRev(rev),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())

	stop := w.stopper()
	emit(map[string]interface{}{"ready": true, "start_rev": rev})
	started := monoNow()
	cpuStart := rusage()
	deadline := started + int64(*w.duration*1e9)
	var events, prevs, bytes, compacted int64
	var first, last int64
	var lastRev int64
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
loop:
	for {
		select {
		case resp, ok := <-wch:
			if !ok {
				break loop
			}
			if resp.CompactRevision != 0 {
				compacted++
				break loop
			}
			if err := resp.Err(); err != nil {
				fatal("watch: %v", err)
			}
			now := monoNow()
			for _, ev := range resp.Events {
				events++
				if stamps != nil {
					stamps.add(ev.Kv.Value, now)
				}
				bytes += int64(len(ev.Kv.Value))
				if *decodeJSON {
					decode(ev.Kv.Value)
				}
				if ev.PrevKv != nil {
					prevs++
					bytes += int64(len(ev.PrevKv.Value))
					if *decodeJSON {
						decode(ev.PrevKv.Value)
					}
				}
				lastRev = ev.Kv.ModRevision
			}
			if len(resp.Events) > 0 {
				if first == 0 {
					first = now
				}
				last = now
				stop.saw(lastRev)
			}
		case <-ticker.C:
		}
		if w.over(deadline, stop) {
			break
		}
	}
	cpu := rusage().since(cpuStart)
	out := map[string]interface{}{
		"cmd": "watch", "events": events, "with_prev_kv": prevs, "value_bytes_received": bytes,
		"last_revision": lastRev, "compacted": compacted,
		"seconds":        round3(float64(monoNow()-started) / 1e9),
		"active_seconds": round3(float64(last-first) / 1e9),
	}
	if last > first {
		out["events_per_s_active"] = round3(float64(events-1) * 1e9 / float64(last-first))
	}
	if *decodeJSON {
		out["decode_errors"] = decodeErrors
	}
	if stamps != nil {
		stamps.addTo(out)
	}
	cpu.addTo(out, events, "cpu_us_per_event")
	emit(out)
}

// runV2Poll watches like Kubernetes 1.5's etcd2 helper: a KeysAPI Watcher with AfterIndex and
// Recursive, whose Next() sends one long-poll GET ?wait=true&recursive=true&waitIndex=N per event.
// A 401 (the index fell out of etcd's 1,000-event history) is answered with a recursive GET of the
// prefix (a relist) and a new watcher after its X-Etcd-Index; the indexes skipped are counted lost.
func runV2Poll(args []string) {
	fs := flag.NewFlagSet("v2poll", flag.ExitOnError)
	w := newWatchFlags(fs, "key prefix (a v2 directory)", "index")
	startIndex := fs.Uint64("start-index", 0, "first index to watch (0: current + 1)")
	fs.Parse(args)
	prefix := w.prefix

	eps := strings.Split(*w.endpoints, ",")
	kapi := v2Keys(eps, v2Transport(2))
	index := *startIndex
	if index == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := kapi.Get(ctx, "/", nil)
		cancel()
		if err != nil {
			fatal("v2poll: %v", err)
		}
		index = resp.Index + 1
	}
	stop := w.stopper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := monoNow()
	deadline := started + int64(*w.duration*1e9)
	go func() { // Next() blocks in a long poll: end it from outside
		for {
			time.Sleep(50 * time.Millisecond)
			if w.over(deadline, stop) {
				cancel()
				return
			}
		}
	}()
	emit(map[string]interface{}{"ready": true, "start_index": index})
	cpuStart := rusage()
	var events, relists, lost, requests int64
	var lastIndex uint64 = index - 1
	var first, last int64
	watcher := kapi.Watcher(*prefix, &v2.WatcherOptions{AfterIndex: index - 1, Recursive: true})
	for ctx.Err() == nil {
		requests++
		resp, err := watcher.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if e, ok := err.(v2.Error); ok && e.Code == v2.ErrorCodeEventIndexCleared {
				lctx, lcancel := context.WithTimeout(ctx, 60*time.Second)
				list, lerr := kapi.Get(lctx, *prefix, &v2.GetOptions{Recursive: true})
				lcancel()
				if lerr != nil {
					fatal("v2poll: relist: %v", lerr)
				}
				relists++
				if list.Index > lastIndex {
					lost += int64(list.Index - lastIndex)
				}
				lastIndex = list.Index
				stop.saw(int64(lastIndex))
				watcher = kapi.Watcher(*prefix, &v2.WatcherOptions{AfterIndex: list.Index, Recursive: true})
				continue
			}
			fatal("v2poll: %v", err)
		}
		now := monoNow()
		events++
		if first == 0 {
			first = now
		}
		last = now
		lastIndex = resp.Node.ModifiedIndex
		stop.saw(int64(lastIndex))
	}
	cpu := rusage().since(cpuStart)
	out := map[string]interface{}{
		"cmd": "v2poll", "events": events, "relists": relists, "lost_in_relists": lost,
		"requests": requests, "last_index": lastIndex,
		"seconds": round3(float64(monoNow()-started) / 1e9),
	}
	if last > first {
		out["events_per_s_active"] = round3(float64(events-1) * 1e9 / float64(last-first))
	}
	cpu.addTo(out, events, "cpu_us_per_event")
	emit(out)
}
