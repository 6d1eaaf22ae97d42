// Command etcdref is etcdbench's Go reference client: the same work as etcdbench's Python writers
// and watchers, done with etcd's own Go clients (go.etcd.io/etcd/clientv3 and go.etcd.io/etcd/client
// as Debian packages them), so benchmarks/client_vs_go.py can state our client's figures as ratios
// against Go measured in the same run.
//
// Subcommands (each prints exactly one JSON line on stdout when it ends; watchers print a line
// {"ready":true,...} first, once their watch is open):
//
//	put     v3 writer: open loop at -rate R, or closed loop (-max) with -inflight K over -conns C
//	watch   v3 watcher on a prefix, with prev_kv and progress_notify (as the kube-apiserver opens it)
//	v2put   v2 writer, same flags as put
//	v2poll  v2 poll watcher exactly like Kubernetes 1.5: one request per event with waitIndex,
//	        relist on 401 (EcodeEventIndexCleared)
//
// CPU figures come from getrusage(RUSAGE_SELF) taken over the measured interval only.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: etcdref put|watch|v2put|v2poll [flags]  (etcdref CMD -h for flags)")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "put":
		runPut(args, false)
	case "v2put":
		runPut(args, true)
	case "watch":
		runWatch(args)
	case "v2poll":
		runV2Poll(args)
	default:
		usage()
	}
}

// --- output ------------------------------------------------------------------------------------

func emit(v map[string]interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		fatal("json: %v", err)
	}
	os.Stdout.Write(append(b, '\n'))
}

func fatal(format string, a ...interface{}) {
	msg := fmt.Sprintf(format, a...)
	b, _ := json.Marshal(map[string]interface{}{"error": msg})
	os.Stdout.Write(append(b, '\n'))
	fmt.Fprintln(os.Stderr, "etcdref: "+msg)
	os.Exit(1)
}

// --- CPU ---------------------------------------------------------------------------------------

type cpuTimes struct{ user, sys float64 }

func rusage() cpuTimes {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		fatal("getrusage: %v", err)
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return cpuTimes{tv(ru.Utime), tv(ru.Stime)}
}

func (c cpuTimes) since(start cpuTimes) cpuTimes {
	return cpuTimes{c.user - start.user, c.sys - start.sys}
}

func (c cpuTimes) addTo(out map[string]interface{}, per int64, perName string) {
	out["cpu_user_s"] = round6(c.user)
	out["cpu_sys_s"] = round6(c.sys)
	if per > 0 {
		out[perName] = round3((c.user + c.sys) * 1e6 / float64(per))
	} else {
		out[perName] = nil
	}
}

func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }
func round6(x float64) float64 { return float64(int64(x*1e6+0.5)) / 1e6 }

// --- the host's CLOCK_MONOTONIC, which etcdbench's Python processes read too ------------------

var monoBase int64
var monoStart time.Time

func init() {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	monoStart = time.Now()
	monoBase = ts.Nano()
}

// monoNow is CLOCK_MONOTONIC in ns, as Python's time.monotonic_ns(), without a syscall per call.
func monoNow() int64 { return monoBase + int64(time.Since(monoStart)) }

// --- values ------------------------------------------------------------------------------------

// placeholder is etcdbench's stamp placeholder (etcdbench/encoding/objects.py STAMP_PLACEHOLDER):
// a value file holding it gets a real etcdbench stamp per write, so etcdbench's watcher code can
// account for every event exactly as in its own runs.
var placeholder = []byte(strings.Repeat("?", 38))

type valueSource struct {
	template []byte
	at       int // index of the placeholder, or -1
	writerID int
}

func loadValue(file string, size int, writerID int) *valueSource {
	var tmpl []byte
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			fatal("-value-file: %v", err)
		}
		tmpl = b
	} else {
		if size <= 0 {
			fatal("-value-bytes must be > 0 (or give -value-file)")
		}
		tmpl = make([]byte, size)
		for i := range tmpl {
			tmpl[i] = 'a' + byte(i%26)
		}
	}
	return &valueSource{template: tmpl, at: indexOf(tmpl, placeholder), writerID: writerID}
}

func indexOf(b, sub []byte) int {
	return strings.Index(string(b), string(sub))
}

// value returns the bytes of write seq, intended at intendedNs (stamped when the template allows).
func (v *valueSource) value(seq int64, intendedNs int64) string {
	if v.at < 0 {
		return string(v.template)
	}
	stamp := fmt.Sprintf("%04d:%012d:%020d", v.writerID, seq, intendedNs)
	buf := make([]byte, len(v.template))
	copy(buf, v.template)
	copy(buf[v.at:], stamp)
	return string(buf)
}

func keyOf(prefix string, i int64, keys int64) string {
	return prefix + "etcdref-" + strconv.FormatInt(i%keys, 10)
}

// --- stopping watchers -------------------------------------------------------------------------

// stopper ends a watcher: at -duration, or (with -until-stdin) once the revision read from stdin has
// been seen, or when no event came for -idle seconds after that line arrived.
type stopper struct {
	target   int64 // revision to reach, 0 until stdin says
	lastSeen int64 // last revision seen (events or relist)
	lastAt   int64 // monoNow of the last event
	gotAt    int64 // monoNow when the target arrived
}

func (s *stopper) readStdin() {
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if n, err := strconv.ParseInt(line, 10, 64); err == nil {
				atomic.StoreInt64(&s.gotAt, monoNow())
				atomic.StoreInt64(&s.target, n)
			}
		}
	}()
}

func (s *stopper) saw(rev int64) {
	atomic.StoreInt64(&s.lastSeen, rev)
	atomic.StoreInt64(&s.lastAt, monoNow())
}

// done: the target revision was reached, or nothing arrived for `idle` since the target was given.
func (s *stopper) done(idle time.Duration) bool {
	t := atomic.LoadInt64(&s.target)
	if t == 0 {
		return false
	}
	if atomic.LoadInt64(&s.lastSeen) >= t {
		return true
	}
	last := atomic.LoadInt64(&s.lastAt)
	if g := atomic.LoadInt64(&s.gotAt); g > last {
		last = g
	}
	return monoNow()-last > int64(idle)
}
