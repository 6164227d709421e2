#!/usr/bin/env bash
# The README's "first session", runnable: creates a permission, a role, a node, an identity and an
# assignment through Connect JSON (plain curl), then runs two Checks.
# Usage: CANOPY_KEY=cnpy_... [CANOPY_URL=http://127.0.0.1:8080] scripts/first-session.sh
set -euo pipefail
URL=${CANOPY_URL:-http://127.0.0.1:8080}
KEY=${CANOPY_KEY:?set CANOPY_KEY to the development environment key printed at first start}
call() { curl -sS --fail-with-body -H "x-api-key: $KEY" -H 'content-type: application/json' -d "$2" "$URL/canopy.v1.$1"; }
field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v=JSON.parse(s);for(const k of process.argv[1].split("."))v=v[k];console.log(v)})' "$1"; }
suffix=$(date +%s%N)

call CatalogService/BatchCreatePermissions '{"permissions":[{"key":"invoice.read","description":"Read invoices"},{"key":"invoice.approve"}]}' >/dev/null || echo "(permissions exist already)"
ROLE=$(call CatalogService/CreateRole "{\"name\":\"invoice-viewer-$suffix\",\"permissionKeys\":[\"invoice.read\"]}" | field role.id)
ROOT=$(call HierarchyService/GetHierarchySchema '{}' | field rootNodeId)
NODE=$(call HierarchyService/CreateNode "{\"parentId\":\"$ROOT\",\"type\":\"region\",\"name\":\"EMEA\"}" | field node.id)
IDENTITY=$(call IdentityService/CreateIdentity "{\"identity\":{\"email\":\"ada-$suffix@example.com\",\"displayName\":\"Ada\"}}" | field identity.id)
call AssignmentService/CreateAssignment "{\"assignment\":{\"identityId\":\"$IDENTITY\",\"roleId\":\"$ROLE\",\"nodeId\":\"$ROOT\"}}" | field assignment.state
echo "read at EMEA (inherited from the root):"
call CheckService/Check "{\"identityId\":\"$IDENTITY\",\"permission\":\"invoice.read\",\"nodeId\":\"$NODE\"}"
echo
echo "approve at EMEA:"
call CheckService/Check "{\"identityId\":\"$IDENTITY\",\"permission\":\"invoice.approve\",\"nodeId\":\"$NODE\"}"
echo
