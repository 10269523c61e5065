"""The orchestration layer: which model serves, how notes are embedded, indexed and searched,
how an index is rebuilt, who may call. Between `service.api` (HTTP) and the layers below it
(`inference`, `index`, `registry`); `api/` talks to this layer only, never to those below."""
