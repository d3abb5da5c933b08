# Starts one node of propdesk's NATS cluster:
#
#   sh start.sh CONFIG NODE...
#
# CONFIG is the node's config file; each NODE is host:port of a node's cluster listener
# (6222), this node's own included (NATS ignores its route to itself). compose.yaml runs
# it as the nodes' entrypoint (./nats, mounted at /etc/nats); the StatefulSet of
# deploy/k8s/nats.yaml runs the very same text from its ConfigMap (key start.sh).
# libs/tests/test_deploy_configs.py checks that the two are identical and runs it.
#
# The passwords come from the environment: PROPDESK_NATS_<USER>_PASSWORD, one per user,
# read by auth.conf, and PROPDESK_NATS_ROUTE_PASSWORD, the cluster's own, read by the
# cluster block and put into the route URLs below (NATS reads no variable inside a URL).
# Each must be set and made of letters, digits and - . _ ~ only, the characters a URL
# carries as they are (each service's PROPDESK_NATS_URL carries its password): anything
# else and the node does not start. An empty one too: NATS takes an empty password as a
# password, and anyone could log in as that user with none.
#
# NATS parses a variable's value as config, not as a string: 12345 becomes a number, 10k
# one with a size suffix, true and off booleans, and the server refuses to start
# ("interface conversion: interface {} is int64, not string"); NATS 2.11 also fails on
# about one `openssl rand -hex 32` in fifteen (digits, then e and a digit: 84e916bf...);
# `abc #def` would be cut at the #, `ab}` at the }, `$X` read as another variable, quotes
# and blanks around the value dropped. So every password is handed to the server in single
# quotes, which NATS takes as a string, as it is.
#
# The routes go to the server the same way, through the environment, never on its command
# line, where anyone who can list the container's processes would read the route password
# (/proc/PID/cmdline is world-readable; a process's environment only to its own user):
# PROPDESK_NATS_ROUTES, read by the cluster block (`routes: $PROPDESK_NATS_ROUTES`), holds
# an array of the route URLs, each in single quotes, ['nats-route://route:PASSWORD@NODE',
# ...], which NATS parses as config into a list of strings. Each NODE goes into that text,
# so it must be host:port, the host made of letters, digits, - and . only, the port of
# digits: anything else and the node does not start.
set -eu
conf=${1:?usage: start.sh CONFIG NODE...}
shift
if [ "$#" -eq 0 ]; then
  echo "usage: start.sh CONFIG NODE... (host:port of every node's cluster listener)" >&2
  exit 2
fi
for var in PROPDESK_NATS_INTAKE_PASSWORD PROPDESK_NATS_DISPATCH_PASSWORD \
           PROPDESK_NATS_SLA_PASSWORD PROPDESK_NATS_CALLBACK_PASSWORD \
           PROPDESK_NATS_REPORTING_PASSWORD PROPDESK_NATS_OPERATOR_PASSWORD \
           PROPDESK_NATS_ROUTE_PASSWORD; do
  eval "value=\${$var-}"
  case "$value" in
    "")
      echo "$var is empty or unset" >&2
      exit 1;;
    *[!A-Za-z0-9._~-]*)
      echo "$var: letters, digits and - . _ ~ only (it goes into URLs)" >&2
      exit 1;;
  esac
  if [ "$var" = PROPDESK_NATS_ROUTE_PASSWORD ]; then
    route_password=$value
  fi
  export "$var='$value'"
done
routes=""
for node in "$@"; do
  host=${node%:*}
  port=${node##*:}
  case "$host" in
    "$node"|""|*[!A-Za-z0-9.-]*) host="";;
  esac
  case "$port" in
    ""|*[!0-9]*) host="";;
  esac
  if [ -z "$host" ]; then
    printf 'NODE %s: host:port only (letters, digits, - and . in the host)\n' "$node" >&2
    exit 2
  fi
  routes="${routes:+$routes,}'nats-route://route:${route_password}@${host}:${port}'"
done
export PROPDESK_NATS_ROUTES="[$routes]"
exec nats-server -c "$conf"
