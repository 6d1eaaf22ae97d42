package main

import (
	"context"
	"flag"
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

// runWatch: one v3 watch on -prefix with prev_kv and progress_notify, counting events. The Go
// watcher does not decode the Kubernetes object (Debian ships no k8s.io/api for it): its figures are
// the client's transport and gRPC decode cost only, a lower bound for a watcher that decodes.
func runWatch(args []string) {
	fs := flag.NewFlagSet("watch", flag.ExitOnError)
	w := newWatchFlags(fs, "key prefix", "revision")
	startRev := fs.Int64("start-rev", 0, "first revision to watch (0: current + 1)")
	fs.Parse(args)
	endpoints, prefix := w.endpoints, w.prefix

	cli, err := clientv3.New(clientv3.Config{
		Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second,
		MaxCallRecvMsgSize: 256 << 20,
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
				bytes += int64(len(ev.Kv.Value))
				if ev.PrevKv != nil {
					prevs++
					bytes += int64(len(ev.PrevKv.Value))
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
