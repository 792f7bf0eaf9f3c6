#!/bin/bash
touch /tmp/step3-ready
