import { EurekaSource } from '../../src/registry-bridge/eureka/eureka.source.js';
import { RecordingSink } from './eureka-sink.js';

/**
 * Run as its own process by the stop test (`node --import tsx eureka-stop-child.ts <url>`): starts a
 * source, lets it fetch a few times, stops it and prints what is still alive. The process must then
 * exit by itself: a timer or socket left behind would keep it running.
 */
const url = process.argv[2];
if (!url) throw new Error('usage: eureka-stop-child.ts <eureka base url>');
const sink = new RecordingSink();
const source = new EurekaSource({ urls: [url], fetchIntervalMs: 100 });
await source.start(sink);
await new Promise((resolve) => setTimeout(resolve, 500));
await source.stop();
console.log(JSON.stringify({ stats: source.stats, resources: process.getActiveResourcesInfo() }));
