"""The replay suite: every observation of the real FlowKit-UI backend
(`reference/observed-behaviour.json`) replayed against `flowkit-loader serve
--upstream-quirks` over HTTP and against the store in-process, or excluded with a reason
(`exclusions.json`)."""
