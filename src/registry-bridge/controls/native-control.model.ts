import { Schema } from 'mongoose';

/**
 * A native control: a change Steward wrote into a registry for an application that runs no agent.
 * Kept forever, so every control says who did what, when, why, and how it was undone.
 */
export type ControlAction = 'isolate' | 'weight';
export type ControlState = 'pending' | 'active' | 'reverted' | 'superseded' | 'failed';

export interface NativeControl {
  _id: string;
  action: ControlAction;
  application: string;
  instanceId: string;
  host: string;
  port: number;
  registry: 'zookeeper' | 'eureka';
  /** The configurator znodes, or the Eureka `APP/instanceId`, written. */
  targets: string[];
  /** Dubbo: the services of the instance the configurators name (what a revert rewrites). */
  services?: { interface: string; group: string; version: string }[];
  weight?: number;
  state: ControlState;
  actor: string;
  from: string;
  reason: string;
  createdAt: Date;
  revertedAt?: Date;
  revertedBy?: string;
  error?: string;
}

export const NATIVE_CONTROL = 'NativeControl';

export const NativeControlSchema = new Schema<NativeControl>(
  {
    _id: { type: String, required: true },
    action: { type: String, required: true, enum: ['isolate', 'weight'] },
    application: { type: String, required: true, index: true },
    instanceId: { type: String, required: true, index: true },
    host: { type: String, required: true },
    port: { type: Number, required: true },
    registry: { type: String, required: true, enum: ['zookeeper', 'eureka'] },
    targets: { type: [String], required: true },
    services: { type: Schema.Types.Mixed },
    weight: { type: Number },
    state: { type: String, required: true, enum: ['pending', 'active', 'reverted', 'superseded', 'failed'], index: true },
    actor: { type: String, required: true },
    from: { type: String, required: true },
    reason: { type: String, default: '' },
    createdAt: { type: Date, required: true },
    revertedAt: { type: Date },
    revertedBy: { type: String },
    error: { type: String },
  },
  { collection: 'native_controls', versionKey: false },
);
