// kube-apiserver, built from k8s.io/kubernetes at the version pinned in go.mod, for the
// conformance suite (test/cluster). Nothing is changed but the lifeline.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"

	"spot-runtime/test/cluster/internal/lifeline"
)

func main() {
	lifeline.Tie()
	command := app.NewAPIServerCommand()
	os.Exit(cli.Run(command))
}
