"""Tests of the HTTP server: the app in-process (``support.app``) and real ``ml-dash serve`` processes."""
