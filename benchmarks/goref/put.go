package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v2 "go.etcd.io/etcd/client"
	"go.etcd.io/etcd/clientv3"
)

type putFn func(ctx context.Context, conn int, key, value string) error

// runPut writes for -warmup + -duration seconds and reports the measured part: writes acknowledged
// among those sent after the warm-up, per second of (last acknowledgement - end of warm-up), and the
// process's CPU over the same interval.
func runPut(args []string, useV2 bool) {
	name := "put"
	if useV2 {
		name = "v2put"
	}
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	endpoints := fs.String("endpoints", "http://127.0.0.1:2379", "comma-separated client URLs")
	rate := fs.Float64("rate", 0, "open loop: intended writes/s (write i at t0 + i/rate)")
	max := fs.Bool("max", false, "closed loop: as fast as -inflight requests in flight allow")
	duration := fs.Float64("duration", 10, "measured seconds")
	warmup := fs.Float64("warmup", 1, "unmeasured seconds first (same load)")
	valueBytes := fs.Int("value-bytes", 3636, "value size (ignored with -value-file)")
	valueFile := fs.String("value-file", "", "write this file's bytes; a 38-'?' placeholder gets an etcdbench stamp per write")
	conns := fs.Int("conns", 4, "client connections (v3: gRPC clients; v2: max idle HTTP connections)")
	inflight := fs.Int("inflight", 64, "requests in flight")
	prefix := fs.String("prefix", "/registry/pods/", "key prefix")
	keys := fs.Int64("keys", 1000, "distinct keys, written round-robin")
	writerID := fs.Int("writer-id", 0, "writer id in the stamp")
	tlsCfg := tlsFlags(fs, "v3 over TLS")
	fs.Parse(args)
	if (*rate > 0) == *max {
		fatal("%s: give exactly one of -rate R or -max", name)
	}
	if *conns < 1 || *inflight < 1 || *keys < 1 {
		fatal("%s: -conns, -inflight and -keys must be >= 1", name)
	}
	eps := strings.Split(*endpoints, ",")
	values := loadValue(*valueFile, *valueBytes, *writerID)

	var put putFn
	var probe func(ctx context.Context, conn int) error
	var closeAll func()
	if useV2 {
		put, probe, closeAll = v2Putter(eps, *conns, *inflight)
	} else {
		put, probe, closeAll = v3Putter(eps, *conns, tlsCfg())
	}
	defer closeAll()

	// One read per connection before the clock starts: connections are up, and nothing is written
	// that a watcher of the prefix would see.
	for c := 0; c < *conns; c++ {
		if err := probe(context.Background(), c); err != nil {
			fatal("%s: first request to %s failed: %v", name, *endpoints, err)
		}
	}

	var written, errors, early, ackedInWindow int64
	var lastAck int64
	var firstErr atomic.Value
	t0 := monoNow() + int64(50*time.Millisecond)
	windowStart := t0 + int64(*warmup*1e9)
	end := windowStart + int64(*duration*1e9)
	var cpuStart cpuTimes
	cpuTaken := make(chan struct{})
	go func() {
		time.Sleep(time.Duration(windowStart - monoNow()))
		cpuStart = rusage()
		close(cpuTaken)
	}()

	do := func(seq int64, intended int64) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := put(ctx, int(seq%int64(*conns)), keyOf(*prefix, seq, *keys), values.value(seq, intended))
		cancel()
		now := monoNow()
		if err != nil {
			atomic.AddInt64(&errors, 1)
			firstErr.Store(err.Error())
			return
		}
		if now >= windowStart && now < end {
			atomic.AddInt64(&ackedInWindow, 1)
		}
		if intended >= windowStart {
			atomic.AddInt64(&written, 1)
			for {
				last := atomic.LoadInt64(&lastAck)
				if now <= last || atomic.CompareAndSwapInt64(&lastAck, last, now) {
					break
				}
			}
		} else {
			atomic.AddInt64(&early, 1)
		}
	}

	var maxSlip int64
	var wg sync.WaitGroup
	if *max {
		var seq int64 = -1
		time.Sleep(time.Duration(t0 - monoNow()))
		for g := 0; g < *inflight; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					now := monoNow()
					if now >= end {
						return
					}
					do(atomic.AddInt64(&seq, 1), now)
				}
			}()
		}
	} else {
		sem := make(chan struct{}, *inflight)
		interval := 1e9 / *rate
		for i := int64(0); ; i++ {
			intended := t0 + int64(float64(i)*interval)
			if intended >= end {
				break
			}
			if d := intended - monoNow(); d > 0 {
				time.Sleep(time.Duration(d))
			}
			sem <- struct{}{}
			if slip := monoNow() - intended; slip > maxSlip && intended >= windowStart {
				maxSlip = slip
			}
			wg.Add(1)
			go func(i, intended int64) {
				defer wg.Done()
				do(i, intended)
				<-sem
			}(i, intended)
		}
	}
	wg.Wait()
	<-cpuTaken
	cpu := rusage().since(cpuStart)
	finished := atomic.LoadInt64(&lastAck)
	if finished < end {
		finished = end
	}
	seconds := float64(finished-windowStart) / 1e9
	out := map[string]interface{}{
		"cmd": name, "mode": map[bool]string{true: "max", false: "rate"}[*max],
		"target_rate": *rate, "inflight": *inflight, "conns": *conns,
		"value_bytes": len(values.template), "stamped": values.at >= 0,
		"writes": written, "warmup_writes": early, "seconds": round3(seconds),
		"writes_per_s": round3(float64(written) / seconds), "errors": errors,
		"max_slip_ms": round3(float64(maxSlip) / 1e6),
		// as etcdbench's write_rate_achieved: acknowledgements while the window was open, per second of it
		"window_writes_per_s": round3(float64(ackedInWindow) / *duration),
	}
	if e, ok := firstErr.Load().(string); ok {
		out["error_sample"] = e
	}
	cpu.addTo(out, written, "cpu_us_per_write")
	emit(out)
}

// tlsFlags defines -cacert, -cert and -key on fs (help text starting with `what`); the function it
// returns makes their tls.Config once fs is parsed.
func tlsFlags(fs *flag.FlagSet, what string) func() *tls.Config {
	cacert := fs.String("cacert", "", what+": CA certificate (PEM) that signed etcd's certificate")
	cert := fs.String("cert", "", what+": client certificate (PEM)")
	key := fs.String("key", "", what+": client certificate's key (PEM)")
	return func() *tls.Config { return tlsConfig(*cacert, *cert, *key) }
}

// tlsConfig is nil without -cacert, else what etcdctl's --cacert/--cert/--key set up.
func tlsConfig(cacert, cert, key string) *tls.Config {
	if cacert == "" {
		return nil
	}
	pem, err := os.ReadFile(cacert)
	if err != nil {
		fatal("-cacert: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fatal("-cacert: %s holds no certificate", cacert)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			fatal("-cert/-key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

func v3Putter(eps []string, conns int, tlsCfg *tls.Config) (putFn, func(context.Context, int) error, func()) {
	clients := make([]*clientv3.Client, conns)
	for i := range clients {
		c, err := clientv3.New(clientv3.Config{
			Endpoints: eps, DialTimeout: 5 * time.Second, MaxCallSendMsgSize: 64 << 20, TLS: tlsCfg,
		})
		if err != nil {
			fatal("put: connect %v: %v", eps, err)
		}
		clients[i] = c
	}
	put := func(ctx context.Context, conn int, key, value string) error {
		_, err := clients[conn].Put(ctx, key, value)
		return err
	}
	probe := func(ctx context.Context, conn int) error {
		_, err := clients[conn].Get(ctx, "\x00", clientv3.WithCountOnly())
		return err
	}
	return put, probe, func() {
		for _, c := range clients {
			c.Close()
		}
	}
}

func v2Transport(idle int) *http.Transport {
	return &http.Transport{
		Dial:                (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).Dial,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: idle,
	}
}

func v2Keys(eps []string, transport *http.Transport) v2.KeysAPI {
	c, err := v2.New(v2.Config{Endpoints: eps, Transport: transport})
	if err != nil {
		fatal("v2: client for %v: %v", eps, err)
	}
	return v2.NewKeysAPI(c)
}

func v2Putter(eps []string, conns, inflight int) (putFn, func(context.Context, int) error, func()) {
	// Keep a keep-alive connection for every request in flight: the Go default (2 idle per host)
	// would open and close connections under load, which no long-running client does.
	idle := inflight
	if conns > idle {
		idle = conns
	}
	transport := v2Transport(idle)
	kapi := v2Keys(eps, transport)
	put := func(ctx context.Context, _ int, key, value string) error {
		_, err := kapi.Set(ctx, key, value, nil)
		return err
	}
	probe := func(ctx context.Context, _ int) error {
		_, err := kapi.Get(ctx, "/", nil)
		return err
	}
	return put, probe, transport.CloseIdleConnections
}
