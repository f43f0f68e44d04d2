//! Chromium through the DevTools protocol (written below).
