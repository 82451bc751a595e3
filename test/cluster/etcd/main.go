// etcd, built from go.etcd.io/etcd/server/v3 at the version pinned in go.mod (the one
// k8s.io/kubernetes itself requires), for the conformance suite (test/cluster).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"

	"spot-runtime/test/cluster/internal/lifeline"
)

func main() {
	lifeline.Tie()
	etcdmain.Main(os.Args)
}
