#!/usr/bin/env node
'use strict';
// Runs the TypeScript sources directly through tsx, so the checkout needs no build step.
require('tsx/cjs/api').register();
require('../src/cli/main.ts').run(process.argv.slice(2));
